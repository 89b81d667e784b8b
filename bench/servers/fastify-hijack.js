// Baseline for connection setup: Fastify (routing, request and reply objects) with the reply hijacked
// (`reply.hijack()`), then plain node:http: the head is flushed and every event is one Buffer, `res.write(buf)` to
// every client (as node-http-write.js). What any Fastify SSE route costs before the SSE library does anything.
import Fastify from 'fastify'
import { announce, clock, parseBroadcast, sseFrame, stats, trigger } from './common.js'

const app = Fastify({ logger: false })
const clients = new Set()

app.get('/sse', (request, reply) => {
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
  res.flushHeaders()
  clients.add(res)
  res.on('close', () => clients.delete(res))
})

app.post('/broadcast', async (request, reply) => {
  const params = parseBroadcast(request.url)
  if (params === null) return reply.code(400).send({ error: 'bad events/size' })
  await trigger(params, (sample, i) => {
    const buf = Buffer.from(sseFrame(i, JSON.stringify(sample)))
    for (const client of clients) client.write(buf)
  })
  return { events: params.events, clients: clients.size }
})

app.get('/clock', async () => clock())
app.get('/stats', async (request) => stats(request.url, clients.size))

await app.listen({ port: 0, host: '127.0.0.1' })
announce(app.server.address().port, { name: 'fastify-hijack', path: '/sse' })
