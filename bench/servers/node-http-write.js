// Baseline: plain node:http, one Buffer per event, `res.write(buf)` to every client.
import http from 'node:http'
import { announce, buildSamples, parseBroadcast, sseFrame, stats } from './common.js'

const clients = new Set()

const server = http.createServer((req, res) => {
  const url = req.url
  if (req.method === 'GET' && url === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    res.flushHeaders()
    clients.add(res)
    res.on('close', () => clients.delete(res))
    return
  }
  if (req.method === 'POST' && url.startsWith('/broadcast')) {
    const params = parseBroadcast(url)
    if (params === null) return json(res, 400, { error: 'bad events/size' })
    const samples = buildSamples(params.events, params.size)
    for (let i = 0; i < samples.length; i++) {
      const buf = Buffer.from(sseFrame(i, JSON.stringify(samples[i])))
      for (const client of clients) client.write(buf)
    }
    return json(res, 200, { events: params.events, clients: clients.size })
  }
  if (req.method === 'GET' && url.startsWith('/stats')) return json(res, 200, stats(url, clients.size))
  json(res, 404, { error: 'not found' })
})

function json (res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

server.listen(0, '127.0.0.1', () => announce(server.address().port, { name: 'node-http-write', path: '/sse' }))
