// Baseline: plain node:http, one Buffer per event, `res.write(buf)` to every client.
import http from 'node:http'
import { announce, clock, parseBroadcast, sseFrame, stats, trigger } from './common.js'

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
    trigger(params, (sample, i) => {
      const buf = Buffer.from(sseFrame(i, JSON.stringify(sample)))
      for (const client of clients) client.write(buf)
    }).then(() => json(res, 200, { events: params.events, clients: clients.size }), (err) => json(res, 500, { error: String(err) }))
    return
  }
  if (req.method === 'GET' && url === '/clock') return json(res, 200, clock())
  if (req.method === 'GET' && url.startsWith('/stats')) return json(res, 200, stats(url, clients.size))
  json(res, 404, { error: 'not found' })
})

function json (res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

server.listen(0, '127.0.0.1', () => announce(server.address().port, { name: 'node-http-write', path: '/sse' }))
