import type { Socket } from 'node:net'
import { EventSource } from 'eventsource'
import t from 'tap'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

for (const inPlace of [false, true]) {
  t.test(`clients at 1 s and 5 s on one agent over SSE: one stream at 1 s, every 5th sample for the slow one, re-tuned to 5 s when the fast one leaves (${inPlace ? 'changeInterval' : 'stop+start'})`, async (t) => {
    const adapter = new TestAdapter()
    const changes = inPlace ? adapter.enableChangeInterval() : []
    const { sse, status } = await startServer(t, { adapter })
    const fast = await sse('/agents/agent1/metrics/stream?interval_seconds=1')
    await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
    const slow = await sse('/agents/agent1/metrics/stream?interval_seconds=5')
    await waitFor(async () => (await status('agent1')).sse_clients === 2, 'both clients')
    t.match(await status('agent1'), { interval_seconds: 1, requested_intervals: [1, 5] })
    t.equal(adapter.startCalls.length, 1, 'one start')
    for (let i = 1; i <= 20; i++) adapter.push('agent1', { i })
    await waitFor(() => fast.events.length === 20, 'the fast client to get all 20')
    await waitFor(() => slow.events.length === 4, 'the slow client to get 4')
    t.same(slow.events.map((e) => e.id), ['1', '6', '11', '16'])
    fast.close()
    await waitFor(async () => (await status('agent1')).interval_seconds === 5, 'the re-tune to 5 s')
    t.match(await status('agent1'), { requested_intervals: [5], sse_clients: 1, streaming_active: true })
    if (inPlace) {
      t.same(changes.map((c) => c.intervalSeconds), [5])
      t.equal(adapter.startCalls.length, 1)
    } else {
      t.same(adapter.startCalls.map((c) => c.intervalSeconds), [1, 5])
      t.equal(adapter.maxConcurrentPerAgent, 1)
    }
    slow.close()
  })
}

t.test('a late subscriber gets the newest sample first, with its id', async (t) => {
  const { sse, adapter } = await startServer(t)
  const first = await sse('/agents/agent1/metrics/stream?interval_seconds=5')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('agent1', { n: 1 })
  adapter.push('agent1', { n: 2 })
  await waitFor(() => first.events.length === 2, 'two samples')
  const es = new EventSource(first.url)
  t.teardown(() => es.close())
  const got = await new Promise<{ id: string, data: string }>((resolve) => {
    es.addEventListener('metrics', (event) => resolve({ id: event.lastEventId, data: event.data }))
  })
  t.same(got, { id: '2', data: '{"n":2}' })
  first.close()
})

t.test('an EventSource that loses its connection resumes with Last-Event-ID and gets exactly what it missed, in order', async (t) => {
  const sockets: Socket[] = []
  const { baseUrl, adapter, status } = await startServer(t, { retryMs: 20, stopDelayMs: 5000 }, (app) => {
    app.addHook('onRequest', async (request) => { if (request.url.includes('/metrics/stream')) sockets.push(request.raw.socket as Socket) })
  })
  const es = new EventSource(`${baseUrl}/agents/agent1/metrics/stream?interval_seconds=5`)
  t.teardown(() => es.close())
  const received: string[] = []
  es.addEventListener('metrics', (event) => received.push(`${event.lastEventId}:${event.data}`))
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  for (let i = 1; i <= 3; i++) adapter.push('agent1', { i })
  await waitFor(() => received.length === 3, 'three samples')

  sockets[0]!.destroy() // a network blip
  await waitFor(async () => (await status('agent1')).sse_clients === 0, 'the server to see the disconnect')
  for (let i = 4; i <= 8; i++) adapter.push('agent1', { i })
  await waitFor(() => sockets.length === 2, 'the EventSource to reconnect')
  await waitFor(() => received.length === 8, 'the missed samples')
  t.same(received, [1, 2, 3, 4, 5, 6, 7, 8].map((i) => `${i}:{"i":${i}}`), 'every sample once, in order, despite k = 5 for live ones')
  t.equal(adapter.startCalls.length, 1, 'the blip was inside the grace window')
})

t.test('a Last-Event-ID older than the replay buffer gets event: gap, then only the newest sample', async (t) => {
  const { sse, adapter } = await startServer(t, { replayBufferSize: 4 })
  const first = await sse('/agents/agent1/metrics/stream?interval_seconds=1')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  for (let i = 1; i <= 10; i++) adapter.push('agent1', { i })
  await waitFor(() => first.events.length === 10, 'ten samples')

  const old = await sse('/agents/agent1/metrics/stream?interval_seconds=1', { 'last-event-id': '2' })
  const gap = await old.next()
  t.same(gap, { event: 'gap', id: undefined, data: '{"missed":7,"last_event_id":2}' })
  t.same(await old.next(), { event: 'metrics', id: '10', data: '{"i":10}' })
  t.match(old.raw, /event: gap\ndata: \{"missed":7,"last_event_id":2\}\n\nid: 10\n/, 'the gap frame carries no id')

  const recent = await sse('/agents/agent1/metrics/stream?interval_seconds=1', { 'last-event-id': '7' })
  await waitFor(() => recent.events.length === 3, 'the replay')
  t.same(recent.events.map((e) => e.id), ['8', '9', '10'])

  const current = await sse('/agents/agent1/metrics/stream', { 'last-event-id': '10' })
  adapter.push('agent1', { i: 11 })
  t.match(await current.next(), { id: '11' }, 'an id equal to the newest sends nothing again')
  for (const client of [first, old, recent, current]) client.close()
})

t.test('over HTTP/2 a resume replays every held sample, even past maxBufferedBytes', async (t) => {
  const http2 = await import('node:http2')
  const Fastify = (await import('fastify')).default
  const agentSse = (await import('../lib/index.js')).default
  const adapter = new TestAdapter()
  const app = Fastify({ http2: true })
  t.teardown(() => app.close())
  await app.register(agentSse, { adapter, stopDelayMs: 5000, maxBufferedBytes: 16 * 1024 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const session = http2.connect(`http://127.0.0.1:${port}`)
  t.teardown(() => session.close())
  const open = (headers: Record<string, string>) => {
    const state = { text: '', stream: session.request({ ':path': '/agents/h2/metrics/stream?interval_seconds=1', ...headers }) }
    state.stream.on('data', (chunk: Buffer) => { state.text += chunk.toString() })
    return state
  }
  const ids = (text: string) => [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))
  const first = open({})
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  const pad = 'z'.repeat(6000)
  for (let i = 1; i <= 16; i++) {
    adapter.push('h2', { i, pad })
    await waitFor(() => ids(first.text).length === i, `live sample ${i}`)
  }
  first.stream.close()
  const second = open({ 'last-event-id': '0' })
  await waitFor(() => ids(second.text).length === 16, 'the whole replay (96 KB > maxBufferedBytes)')
  t.same(ids(second.text), Array.from({ length: 16 }, (_, i) => i + 1))
  t.notMatch(second.text, /event: gap/)
  second.stream.close()
})
