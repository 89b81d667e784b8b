// Baseline: plain node:http; the head (with `Transfer-Encoding: chunked`) is flushed, then every event is one
// pre-chunked Buffer (`hex(len)\r\n<frame>\r\n`) written straight to each client's socket, bypassing ServerResponse.
import http from 'node:http'
import { announce, clock, parseBroadcast, sseFrame, stats, trigger } from './common.js'

const CRLF = Buffer.from('\r\n')
const sockets = new Set()

const server = http.createServer((req, res) => {
  const url = req.url
  if (req.method === 'GET' && url === '/sse') {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'transfer-encoding': 'chunked'
    })
    res.flushHeaders()
    const socket = res.socket
    sockets.add(socket)
    res.on('close', () => sockets.delete(socket))
    return
  }
  if (req.method === 'POST' && url.startsWith('/broadcast')) {
    const params = parseBroadcast(url)
    if (params === null) return json(res, 400, { error: 'bad events/size' })
    trigger(params, (sample, i) => {
      const frame = Buffer.from(sseFrame(i, JSON.stringify(sample)))
      const chunk = Buffer.concat([Buffer.from(frame.length.toString(16) + '\r\n'), frame, CRLF])
      for (const socket of sockets) socket.write(chunk)
    }).then(() => json(res, 200, { events: params.events, clients: sockets.size }), (err) => json(res, 500, { error: String(err) }))
    return
  }
  if (req.method === 'GET' && url === '/clock') return json(res, 200, clock())
  if (req.method === 'GET' && url.startsWith('/stats')) return json(res, 200, stats(url, sockets.size))
  json(res, 404, { error: 'not found' })
})

function json (res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

server.listen(0, '127.0.0.1', () => announce(server.address().port, { name: 'node-http-socket', path: '/sse' }))
