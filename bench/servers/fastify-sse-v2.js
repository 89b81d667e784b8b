// fastify-sse-v2 4.2, idiomatic "sending individual events": one shared EventEmitter; each client's listener
// calls `reply.sse(message)`, which feeds that reply's own pushable async iterable piped to the response.
// The library takes `data` as a string, so the broadcast serialises each sample once and emits the string.
import { EventEmitter } from 'node:events'
import Fastify from 'fastify'
import { FastifySSEPlugin } from 'fastify-sse-v2'
import { announce, clock, parseBroadcast, stats, trigger } from './common.js'

const app = Fastify({ logger: false })
await app.register(FastifySSEPlugin)

const bus = new EventEmitter()
bus.setMaxListeners(0)

app.get('/sse', (request, reply) => {
  const listener = (message) => reply.sse(message)
  bus.on('metrics', listener)
  request.socket.on('close', () => {
    bus.off('metrics', listener)
    reply.sseContext?.source.end()
  })
  // The first reply.sse() hijacks the reply, sends the head and `retry:`; a comment opens the stream.
  reply.sse({ comment: 'open' })
})

app.post('/broadcast', async (request, reply) => {
  const params = parseBroadcast(request.url)
  if (params === null) return reply.code(400).send({ error: 'bad events/size' })
  await trigger(params, (sample, i) => {
    bus.emit('metrics', { id: String(i), event: 'metrics', data: JSON.stringify(sample) })
  })
  return { events: params.events, clients: bus.listenerCount('metrics') }
})

app.get('/clock', async () => clock())
app.get('/stats', async (request) => stats(request.url, bus.listenerCount('metrics')))

await app.listen({ port: 0, host: '127.0.0.1' })
announce(app.server.address().port, { name: 'fastify-sse-v2', path: '/sse' })
