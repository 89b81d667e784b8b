// @fastify/sse 0.6, idiomatic: an `sse: 'only'` route that keeps each reply open (`keepAlive()`), and a
// broadcast that calls `reply.sse.send({ id, event, data })` for every open client (the plugin serialises
// `data` with its default JSON.stringify serializer, per send).
import Fastify from 'fastify'
import fastifySse from '@fastify/sse'
import { announce, clock, parseBroadcast, stats, trigger } from './common.js'

const app = Fastify({ logger: false })
await app.register(fastifySse)

const clients = new Set()

app.get('/sse', { sse: 'only' }, async (request, reply) => {
  const sse = reply.sse
  sse.keepAlive()
  clients.add(sse)
  sse.onClose(() => clients.delete(sse))
  // The head is written with the first send: open the stream with an event, as the library's examples do.
  await sse.send({ event: 'open', data: 'connected' })
})

app.post('/broadcast', async (request, reply) => {
  const params = parseBroadcast(request.url)
  if (params === null) return reply.code(400).send({ error: 'bad events/size' })
  await trigger(params, (sample, i) => {
    const message = { id: String(i), event: 'metrics', data: sample }
    // send() only rejects for a closed connection; closed ones leave the set on close.
    for (const sse of clients) if (sse.isConnected) sse.send(message)
  })
  return { events: params.events, clients: clients.size }
})

app.get('/clock', async () => clock())
app.get('/stats', async (request) => stats(request.url, clients.size))

await app.listen({ port: 0, host: '127.0.0.1' })
announce(app.server.address().port, { name: 'fastify-sse', path: '/sse' })
