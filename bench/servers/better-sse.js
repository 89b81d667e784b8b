// better-sse 0.16 on plain node:http (its documented Node HTTP usage): `createSession(req, res)` per client,
// registered on one Channel; the broadcast is `channel.broadcast(sample, 'metrics', { eventId })`
// (the session serialises `data` with its default JSON serializer, per session).
import http from 'node:http'
import { createChannel, createSession } from 'better-sse'
import { announce, buildSamples, parseBroadcast, stats } from './common.js'

const channel = createChannel()

const server = http.createServer((req, res) => {
  const url = req.url
  if (req.method === 'GET' && url === '/sse') {
    createSession(req, res).then((session) => channel.register(session), () => res.destroy())
    return
  }
  if (req.method === 'POST' && url.startsWith('/broadcast')) {
    const params = parseBroadcast(url)
    if (params === null) return json(res, 400, { error: 'bad events/size' })
    const samples = buildSamples(params.events, params.size)
    for (let i = 0; i < samples.length; i++) channel.broadcast(samples[i], 'metrics', { eventId: String(i) })
    return json(res, 200, { events: params.events, clients: channel.sessionCount })
  }
  if (req.method === 'GET' && url.startsWith('/stats')) return json(res, 200, stats(url, channel.sessionCount))
  json(res, 404, { error: 'not found' })
})

function json (res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

server.listen(0, '127.0.0.1', () => announce(server.address().port, { name: 'better-sse', path: '/sse' }))
