// better-sse 0.16 on plain node:http (its documented Node HTTP usage): `createSession(req, res)` per client,
// registered on one Channel; the broadcast is `channel.broadcast(sample, 'metrics', { eventId })`
// (the session serialises `data` with its default JSON serializer, per session).
import http from 'node:http'
import { createChannel, createSession } from 'better-sse'
import { announce, clock, parseBroadcast, stats, trigger } from './common.js'

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
    trigger(params, (sample, i) => { channel.broadcast(sample, 'metrics', { eventId: String(i) }) })
      .then(() => json(res, 200, { events: params.events, clients: channel.sessionCount }), (err) => json(res, 500, { error: String(err) }))
    return
  }
  if (req.method === 'GET' && url === '/clock') return json(res, 200, clock())
  if (req.method === 'GET' && url.startsWith('/stats')) return json(res, 200, stats(url, channel.sessionCount))
  json(res, 404, { error: 'not found' })
})

function json (res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

server.listen(0, '127.0.0.1', () => announce(server.address().port, { name: 'better-sse', path: '/sse' }))
