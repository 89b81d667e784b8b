import { connect, type Socket } from 'node:net'
import { EventSource } from 'eventsource'
import t from 'tap'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

t.test('seed check: streaming_active is false, true while an SSE client is connected, false after the debounce window', async (t) => {
  const { baseUrl, adapter, status } = await startServer(t, { stopDelayMs: 300 })
  t.match(await status('agent1'), { agent_id: 'agent1', streaming_active: false, state: 'idle', sse_clients: 0 })

  const es = new EventSource(`${baseUrl}/agents/agent1/metrics/stream?interval_seconds=2`)
  await new Promise<void>((resolve, reject) => { es.onopen = () => resolve(); es.onerror = reject })
  await waitFor(async () => (await status('agent1')).state === 'active', 'the stream to become active')
  t.match(await status('agent1'), { streaming_active: true, sse_clients: 1, interval_seconds: 2, task_id: 'task-1' })
  t.equal(adapter.startCalls[0]!.intervalSeconds, 2)

  es.close()
  await waitFor(async () => (await status('agent1')).state === 'lingering', 'the debounce window to open')
  t.equal(adapter.stopCalls.length, 0, 'no stop inside the window')
  await waitFor(async () => (await status('agent1')).streaming_active === false, 'streaming_active to become false')
  t.equal(adapter.stopCalls.length, 1)
  t.equal(adapter.liveTasks.size, 0, 'the agent is no longer streaming')
})

t.test('SSE framing: headers, jittered retry first, then metrics events with increasing ids, read by EventSource', async (t) => {
  const { baseUrl, adapter, sse, status } = await startServer(t, { retryMs: 3000 })
  const raw = await sse('/agents/agent1/metrics/stream')
  t.equal(raw.statusCode, 200)
  t.match(raw.headers['content-type'], /^text\/event-stream/)
  t.equal(raw.headers['cache-control'], 'no-cache, no-transform')
  t.equal(raw.headers['x-accel-buffering'], 'no')
  await waitFor(() => raw.retry !== null, 'retry')
  t.ok(raw.retry! >= 2400 && raw.retry! <= 3600, `retry ${raw.retry} within ±20% of 3000`)
  t.match(raw.raw, /^retry: \d+\n\n/, 'retry is the first frame')

  const es = new EventSource(`${baseUrl}/agents/agent1/metrics/stream`)
  t.teardown(() => es.close())
  const received: Array<{ id: string, data: unknown }> = []
  es.addEventListener('metrics', (event) => received.push({ id: event.lastEventId, data: JSON.parse(event.data) }))
  await waitFor(async () => (await status('agent1')).sse_clients === 2 && adapter.liveTasks.size === 1, 'both clients')
  adapter.push('agent1', { cpu_percent: 10, note: 'line\nbreak' })
  adapter.push('agent1', { cpu_percent: 20 })
  await waitFor(() => received.length === 2, 'two samples')
  t.same(received, [{ id: '1', data: { cpu_percent: 10, note: 'line\nbreak' } }, { id: '2', data: { cpu_percent: 20 } }])
  const first = await raw.next((e) => e.event === 'metrics')
  t.same(first, { event: 'metrics', id: '1', data: '{"cpu_percent":10,"note":"line\\nbreak"}' })
  t.match(raw.raw, /id: 2\nevent: metrics\ndata: \{"cpu_percent":20\}\n\n/)
  t.equal(adapter.startCalls.length, 1, 'two clients, one agent stream')
  raw.close()
})

t.test('many clients share one agent stream; the last one leaving stops it once', async (t) => {
  const { adapter, sse, status } = await startServer(t, { stopDelayMs: 150 })
  const clients = await Promise.all(Array.from({ length: 20 }, () => sse('/agents/shared/metrics/stream')))
  await waitFor(async () => (await status('shared')).sse_clients === 20 && adapter.liveTasks.size === 1, '20 clients')
  adapter.push('shared', { n: 1 })
  for (const client of clients) t.match(await client.next(), { event: 'metrics', id: '1', data: '{"n":1}' })
  t.equal(adapter.startCalls.length, 1)
  for (const client of clients.slice(0, 19)) client.close()
  await waitFor(async () => (await status('shared')).sse_clients === 1, 'one client left')
  t.equal((await status('shared')).state, 'active')
  clients[19]!.close()
  await waitFor(() => adapter.liveTasks.size === 0, 'the stream to stop')
  t.equal(adapter.stopCalls.length, 1)
  t.equal(adapter.startCalls.length, 1)
})

t.test('rapid reconnects within the window do not cycle start/stop', async (t) => {
  const { adapter, sse, status } = await startServer(t, { stopDelayMs: 2000 })
  for (let i = 0; i < 10; i++) {
    const client = await sse('/agents/flappy/metrics/stream')
    await waitFor(async () => (await status('flappy')).sse_clients === 1, 'connected')
    client.close()
    await waitFor(async () => (await status('flappy')).sse_clients === 0, 'disconnected')
  }
  t.equal(adapter.startCalls.length, 1)
  t.equal(adapter.stopCalls.length, 0)
})

t.test('a failing start sends event: error with a 502 body and ends the response; the next client retries', async (t) => {
  const adapter = new TestAdapter()
  let fail = true
  const start = adapter.startMetricsStreaming.bind(adapter)
  adapter.startMetricsStreaming = (agentId, options, sink) => fail ? Promise.reject(new Error('agent refused')) : start(agentId, options, sink)
  const { sse, status } = await startServer(t, { adapter })
  const client = await sse('/agents/agent1/metrics/stream')
  t.equal(client.statusCode, 200, 'the SSE route answers 200 at once')
  const event = await client.next((e) => e.event === 'error')
  t.same(JSON.parse(event.data), {
    statusCode: 502,
    code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED',
    error: 'Bad Gateway',
    message: 'fastify-agent-sse: adapter startMetricsStreaming for agent "agent1" failed: agent refused'
  })
  await waitFor(() => client.ended, 'the response to end')
  t.match(await status('agent1'), { state: 'idle', sse_clients: 0 })
  fail = false
  const retry = await sse('/agents/agent1/metrics/stream')
  await waitFor(async () => (await status('agent1')).state === 'active', 'the retry to start')
  retry.close()
})

t.test('a start that times out sends a 504 error event', async (t) => {
  const adapter = new TestAdapter({ autoAnswer: false })
  const { sse } = await startServer(t, { adapter, adapterTimeoutMs: 100 })
  const client = await sse('/agents/slow/metrics/stream')
  const event = await client.next((e) => e.event === 'error')
  t.match(JSON.parse(event.data), { statusCode: 504, code: 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT', error: 'Gateway Timeout' })
  await waitFor(() => client.ended, 'the response to end')
  t.ok(adapter.startCalls[0]!.signal.aborted)
})

t.test('cancelling the task ends every client with event: end cancelled and answers the status', async (t) => {
  const { adapter, sse, json, status } = await startServer(t)
  const a = await sse('/agents/agent1/metrics/stream')
  const b = await sse('/agents/agent1/metrics/stream')
  await json('/agents/agent1/metrics/streaming/start', 'POST', {})
  await waitFor(async () => (await status('agent1')).sse_clients === 2, 'two clients')
  const taskId = (await status('agent1')).task_id
  const response = await json(`/tasks/${taskId}/cancel`, 'POST')
  t.equal(response.statusCode, 200)
  t.match(response.body, { agent_id: 'agent1', streaming_active: false, state: 'idle', manual_hold: false, sse_clients: 0, task_id: null })
  for (const client of [a, b]) {
    t.same(await client.next((e) => e.event === 'end'), { event: 'end', id: undefined, data: '{"reason":"cancelled"}' })
    await waitFor(() => client.ended, 'the response to end')
  }
  t.same(adapter.stopCalls.map((c) => c.taskId), [taskId])
  const again = await json(`/tasks/${taskId}/cancel`, 'POST')
  t.equal(again.statusCode, 404)
  t.equal(again.body.code, 'FST_ERR_AGENT_SSE_UNKNOWN_TASK')
})

t.test('an agent ending its stream sends event: end with its reason; no stop is sent', async (t) => {
  const { adapter, sse, status } = await startServer(t)
  const client = await sse('/agents/edge-7/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.endTask('edge-7', 'agent-offline')
  t.equal((await client.next((e) => e.event === 'end')).data, '{"reason":"agent-offline"}')
  await waitFor(() => client.ended, 'the response to end')
  t.equal((await status('edge-7')).streaming_active, false)
  t.equal(adapter.stopCalls.length, 0)
})

t.test('a malformed Last-Event-ID is ignored, never an error', async (t) => {
  const { adapter, sse } = await startServer(t)
  for (const header of ['abc', '-1', '1.5', '99999999999999999999', '']) {
    const client = await sse('/agents/agent1/metrics/stream', { 'last-event-id': header })
    t.equal(client.statusCode, 200, `Last-Event-ID ${JSON.stringify(header)}`)
    client.close()
  }
  const client = await sse('/agents/agent1/metrics/stream', { 'last-event-id': '7' })
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('agent1', { ok: true })
  t.match(await client.next(), { event: 'metrics', data: '{"ok":true}' })
  client.close()
})

t.test('app.close() ends SSE clients with server-shutdown and stops agent streams, even if the adapter hangs', async (t) => {
  const adapter = new TestAdapter()
  adapter.stopMetricsStreaming = () => new Promise(() => {}) // never answers
  const { app, sse } = await startServer(t, { adapter, adapterTimeoutMs: 200 })
  const a = await sse('/agents/a/metrics/stream')
  const b = await sse('/agents/b/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 2, 'two streams')
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 5000, 'close is bounded')
  for (const client of [a, b]) {
    t.equal((await client.next((e) => e.event === 'end')).data, '{"reason":"server-shutdown"}')
    await waitFor(() => client.ended, 'the response to end')
  }
  t.same(app.streamLifecycle.list(), [])
})

t.test('app.close() with a well-behaved adapter stops every stream through it', async (t) => {
  const { app, adapter, sse, json } = await startServer(t)
  const client = await sse('/agents/a/metrics/stream')
  await json('/agents/held/metrics/streaming/start', 'POST')
  await waitFor(() => adapter.liveTasks.size === 2, 'two streams')
  await app.close()
  t.equal(adapter.liveTasks.size, 0)
  t.equal(adapter.stopCalls.length, 2)
  await waitFor(() => client.ended, 'the response to end')
})

t.test('lifecycle events are logged at info with the seed wording', async (t) => {
  const { adapter, logs, sse } = await startServer(t, { stopDelayMs: 50 })
  const client = await sse('/agents/agent1/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  client.close()
  await waitFor(() => adapter.liveTasks.size === 0, 'the stop')
  const messages = logs.filter((l) => l.level === 30).map((l) => l.msg)
  const expected = [
    /^SSE client connected: \S+$/,
    /^Agent agent1 now has 1 SSE clients$/,
    /^First SSE client connected to agent agent1, starting metrics streaming$/,
    /^Started metrics streaming for agent agent1 \(task: task-1\)$/,
    /^SSE client disconnected: \S+$/,
    /^Agent agent1 now has 0 SSE clients$/,
    /^Last SSE client disconnected from agent agent1, stopping metrics streaming$/,
    /^Stopped metrics streaming for agent agent1 \(task: task-1\)$/
  ]
  let at = 0
  for (const pattern of expected) {
    const found = messages.findIndex((m, i) => i >= at && pattern.test(m))
    t.ok(found >= 0, `logged in order: ${pattern}`)
    if (found >= 0) at = found + 1
  }
  t.notOk(logs.some((l) => l.level >= 50), 'a client disconnect is not an error')
})

t.test("the host's auth hook applies to the SSE route: 401 and no stream starts", async (t) => {
  const { adapter, sse, json } = await startServer(t, {}, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer s3cret') return reply.code(401).send({ statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: 'no token' })
    })
  })
  const denied = await json('/agents/agent1/metrics/stream')
  t.equal(denied.statusCode, 401)
  t.equal(adapter.startCalls.length, 0)
  const allowed = await sse('/agents/agent1/metrics/stream', { authorization: 'Bearer s3cret' })
  t.equal(allowed.statusCode, 200)
  await waitFor(() => adapter.startCalls.length === 1, 'the start')
  allowed.close()
})

t.test('headers set by host hooks (CORS) are kept on the SSE response', async (t) => {
  const { sse } = await startServer(t, {}, (app) => {
    app.addHook('onRequest', async (_request, reply) => { reply.header('access-control-allow-origin', '*') })
  })
  const client = await sse('/agents/agent1/metrics/stream')
  t.equal(client.headers['access-control-allow-origin'], '*')
  client.close()
})

t.test('a client arriving after the lifecycle closed gets a 503 error event instead of a hung stream', async (t) => {
  const { app, sse, adapter } = await startServer(t)
  await app.streamLifecycle.close()
  const client = await sse('/agents/late/metrics/stream')
  t.match(JSON.parse((await client.next((e) => e.event === 'error')).data), { statusCode: 503, code: 'FST_ERR_AGENT_SSE_CLOSED', error: 'Service Unavailable' })
  await waitFor(() => client.ended, 'the response to end')
  t.equal(adapter.startCalls.length, 0)
})

t.test('after a stream ends, its keep-alive connection serves the next request cleanly', async (t) => {
  const { Pool } = await import('undici')
  const { baseUrl, adapter, app } = await startServer(t)
  const pool = new Pool(baseUrl, { connections: 1 })
  t.teardown(() => pool.destroy())
  let sockets = 0
  app.server.on('connection', () => { sockets++ })
  const stream = await pool.request({ path: '/agents/agent1/metrics/stream', method: 'GET' })
  let text = ''
  stream.body.on('data', (chunk: Buffer) => { text += chunk.toString() })
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('agent1', { n: 1 })
  await app.streamLifecycle.cancelTask('task-1')
  await new Promise((resolve) => stream.body.on('end', resolve))
  t.match(text, /id: 1\nevent: metrics\ndata: \{"n":1\}\n\nevent: end\ndata: \{"reason":"cancelled"\}\n\n$/)
  const next = await pool.request({ path: '/agents/agent1/status', method: 'GET' })
  t.equal(next.statusCode, 200)
  t.match(await next.body.json(), { agent_id: 'agent1', state: 'idle' })
  t.equal(sockets, 1, 'the same connection was reused')
})

t.test('an HTTP/1.0 client gets a close-delimited stream', async (t) => {
  const { connect } = await import('node:net')
  const { baseUrl, adapter } = await startServer(t)
  const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  let text = ''
  socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
  socket.write('GET /agents/old/metrics/stream HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('old', { v: 1 })
  await waitFor(() => text.includes('data: {"v":1}'), 'the sample')
  t.match(text, /^HTTP\/1\.1 200 OK\r\n/)
  t.notMatch(text, /transfer-encoding: chunked/i, 'no chunked encoding for HTTP/1.0')
  t.match(text, /\r\n\r\nretry: \d+\n\nid: 1\nevent: metrics\ndata: \{"v":1\}\n\n$/)
})

t.test('a window with more sockets than one flush slice reaches every client, in order (the flush yields between slices)', async (t) => {
  const { app, adapter, baseUrl } = await startServer(t, { flushIntervalMs: 0, maxClients: 0, maxClientsPerAgent: 0 })
  const { port } = new URL(baseUrl)
  const count = 1200 // more than two slices of 512
  const received: string[] = Array.from({ length: count }, () => '')
  const sockets: Socket[] = []
  t.teardown(() => { for (const socket of sockets) socket.destroy() })
  await Promise.all(Array.from({ length: count }, (_, index) => new Promise<void>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    sockets.push(socket)
    socket.setEncoding('latin1')
    socket.on('error', reject)
    socket.on('data', (data: string) => {
      received[index] += data
      if (received[index]!.includes('\r\n\r\n')) resolve()
    })
    socket.write('GET /agents/many/metrics/stream?interval_seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n')
  })))
  await waitFor(() => app.streamLifecycle.status('many').subscribers === count && adapter.startCalls.length === 1, 'every client subscribed and the stream started', 20_000)
  await waitFor(() => adapter.liveTasks.size === 1, 'the task to be live', 10_000)
  // The first push corks all 1,200 sockets in one window, written in three slices (one per macrotask);
  // the second comes between slices: it joins the sockets still waiting, and opens a new window for
  // the ones already written, which must not overtake the first window.
  adapter.push('many', { n: 1 })
  setImmediate(() => adapter.push('many', { n: 2 }))
  await waitFor(() => received.every((text) => text.includes('"n":2')), 'every client to get both samples', 20_000)
  t.ok(received.every((text) => text.indexOf('"n":1') !== -1 && text.indexOf('"n":1') < text.indexOf('"n":2')), `all ${count} clients got sample 1, then sample 2`)
})

t.test('a new stream\'s head does not wait for the flush window (it leaves at the end of the tick, with the retry frame)', async (t) => {
  const { sse } = await startServer(t, { flushIntervalMs: 1000 })
  const openedAt = Date.now()
  const stream = await sse('/agents/head/metrics/stream')
  t.teardown(() => stream.close())
  const waitedMs = Date.now() - openedAt
  t.equal(stream.statusCode, 200)
  t.ok(waitedMs < 900, `the head came in ${waitedMs} ms, not after the 1,000 ms window`)
  await waitFor(() => stream.retry !== null, 'the retry frame', 900)
})
