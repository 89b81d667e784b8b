import { connect, type Socket } from 'node:net'
import compress from '@fastify/compress'
import t from 'tap'
import { request } from 'undici'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve))

t.test('heartbeats: a ": ping" comment every heartbeatIntervalMs; 0 disables them', async (t) => {
  const { sse } = await startServer(t, { heartbeatIntervalMs: 30 })
  const client = await sse('/agents/agent1/metrics/stream')
  await waitFor(() => (client.raw.match(/: ping\n\n/g) ?? []).length >= 3, 'three pings')
  t.same(client.events, [], 'comments are not events')
  client.close()

  const quiet = await startServer(t, { heartbeatIntervalMs: 0 })
  const silent = await quiet.sse('/agents/agent1/metrics/stream')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.notMatch(silent.raw, /: ping/)
  silent.close()
})

t.test('a client that stops reading: its queue stays bounded, it gets conflated frames, the others get every sample, and it is dropped after stallTimeoutMs', async (t) => {
  const maxBufferedBytes = 16 * 1024
  // Writes at the end of each tick (no window): the bursts below wait for the readers 8,000 times.
  const { baseUrl, app, adapter, sse, logs } = await startServer(t, { maxBufferedBytes, stallTimeoutMs: 800, heartbeatIntervalMs: 0, flushIntervalMs: 0 })
  const { port } = new URL(baseUrl)
  const stalled: Socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => stalled.destroy())
  await new Promise((resolve) => stalled.once('connect', resolve))
  stalled.pause() // never reads: the kernel buffers fill, then Node's queue would grow
  stalled.write('GET /agents/agent1/metrics/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')

  const readers = [await sse('/agents/agent1/metrics/stream'), await sse('/agents/agent1/metrics/stream')]
  await waitFor(() => app.sseConnections().length === 3 && adapter.liveTasks.size === 1, 'three clients and the stream')
  const padding = 'x'.repeat(1000)
  const frameBytes = Buffer.byteLength(`id: 10000\nevent: metrics\ndata: ${JSON.stringify({ i: 10000, padding })}\n\n`)
  let maxSeen = 0
  let maxBlocked = 0
  let pushed = 0
  const started = Date.now()
  while (pushed < 8000) {
    for (let i = 0; i < 8; i++) adapter.push('agent1', { i: ++pushed, padding })
    const connections = app.sseConnections()
    for (const connection of connections) maxSeen = Math.max(maxSeen, connection.bufferedBytes)
    maxBlocked = Math.max(maxBlocked, connections.filter((c) => c.blocked).length)
    // The readers keep up: wait until they have everything before the next burst.
    while (readers.some((reader) => reader.events.length < pushed)) {
      if (Date.now() - started > 60_000) throw new Error('readers fell behind')
      await nextTick()
    }
  }
  // On a slow machine the loop may outlast stallTimeoutMs, so the stalled client may already be gone here.
  t.equal(maxBlocked, 1, 'only the stalled client was ever blocked')
  t.ok(maxSeen <= maxBufferedBytes + frameBytes, `queued bytes stayed within maxBufferedBytes + one frame (max seen ${maxSeen}, bound ${maxBufferedBytes + frameBytes})`)
  for (const reader of readers) {
    t.equal(reader.events.length, 8000, 'a reader got every sample')
    t.ok(reader.events.every((event, index) => event.id === String(index + 1)), 'in order, none skipped')
  }
  await waitFor(() => app.sseConnections().length === 2, 'the stalled client to be dropped', 10_000)
  t.ok(logs.some((l) => /has not drained for \d+ ms, disconnecting it/.test(l.msg)), 'the drop is logged')
  t.notOk(logs.some((l) => l.level >= 50), 'and it is not an error')
  t.equal((await (await request(`${baseUrl}/agents/agent1/status`)).body.json() as { sse_clients: number }).sse_clients, 2, 'the stalled client counts as a normal disconnect')
  for (const reader of readers) reader.close()
})

t.test('a slow client that catches up gets the newest sample, not a backlog', async (t) => {
  const { baseUrl, app, adapter } = await startServer(t, { maxBufferedBytes: 2048, stallTimeoutMs: 60_000, heartbeatIntervalMs: 0 })
  const { port } = new URL(baseUrl)
  const slow: Socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => slow.destroy())
  await new Promise((resolve) => slow.once('connect', resolve))
  slow.pause()
  slow.write('GET /agents/agent1/metrics/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  const padding = 'y'.repeat(4000)
  let pushed = 0
  while (!app.sseConnections()[0]!.blocked && pushed < 20_000) {
    adapter.push('agent1', { i: ++pushed, padding })
    await nextTick()
  }
  t.ok(app.sseConnections()[0]!.blocked, `blocked after ${pushed} samples`)
  for (let i = 0; i < 50; i++) adapter.push('agent1', { i: ++pushed, padding })
  let text = ''
  slow.on('data', (chunk: Buffer) => { text += chunk.toString() })
  slow.resume()
  await waitFor(() => text.includes(`"i":${pushed},`), 'the newest sample to arrive')
  const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))
  t.ok(ids.length < pushed, `conflated: ${ids.length} frames for ${pushed} samples`)
  t.equal(ids.at(-1), pushed, 'the last frame is the newest sample')
  t.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), 'ids only go up')
})

t.test('limits: maxClients and maxClientsPerAgent answer 503 with Retry-After before any lifecycle change', async (t) => {
  const { sse, json, adapter, status } = await startServer(t, { maxClients: 3, maxClientsPerAgent: 2, retryMs: 2500 })
  const a1 = await sse('/agents/a/metrics/stream')
  const a2 = await sse('/agents/a/metrics/stream')
  await waitFor(async () => (await status('a')).sse_clients === 2, 'two clients on a')
  const perAgent = await json('/agents/a/metrics/stream')
  t.equal(perAgent.statusCode, 503)
  t.equal(perAgent.headers['retry-after'], '3')
  t.same(perAgent.body, { statusCode: 503, code: 'FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS', error: 'Service Unavailable', message: 'fastify-agent-sse: too many SSE clients (maxClientsPerAgent limit of 2 reached)' })
  t.equal((await status('a')).sse_clients, 2)
  const b1 = await sse('/agents/b/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 2, 'b streams')
  const global = await json('/agents/c/metrics/stream')
  t.equal(global.statusCode, 503)
  t.match(global.body, { message: /maxClients limit of 3/ })
  t.equal(adapter.startsFor('c'), 0, 'no start for the refused client')
  t.equal((await status('c')).state, 'idle')
  a1.close()
  await waitFor(async () => (await status('a')).sse_clients === 1, 'a slot to free up')
  const c1 = await sse('/agents/c/metrics/stream')
  t.equal(c1.statusCode, 200, 'accepted once below the limit')
  for (const client of [a2, b1, c1]) client.close()
})

t.test('authorizeAgent: false answers 403 on every agent route before anything happens; /streams only lists allowed agents', async (t) => {
  const { json, adapter, status } = await startServer(t, {
    authorizeAgent: async (request, agentId) => agentId !== 'secret' || request.headers['x-role'] === 'admin'
  })
  for (const [method, path] of [
    ['GET', '/agents/secret/metrics/stream'],
    ['POST', '/agents/secret/metrics/streaming/start'],
    ['POST', '/agents/secret/metrics/streaming/stop'],
    ['GET', '/agents/secret/metrics/current'],
    ['GET', '/agents/secret/status']
  ] as const) {
    const denied = await json(path, method)
    t.equal(denied.statusCode, 403, `${method} ${path}`)
    t.same(denied.body, { statusCode: 403, code: 'FST_ERR_AGENT_SSE_FORBIDDEN', error: 'Forbidden', message: 'fastify-agent-sse: not allowed to access agent "secret"' })
  }
  t.equal(adapter.startCalls.length, 0)
  const admin = { 'x-role': 'admin' }
  t.equal((await json('/agents/secret/metrics/streaming/start', 'POST', undefined, admin)).statusCode, 200)
  t.equal((await json('/agents/public/metrics/streaming/start', 'POST')).statusCode, 200)
  t.same((await json('/streams')).body.streams.map((s: { agent_id: string }) => s.agent_id), ['public'])
  t.same((await json('/streams', 'GET', undefined, admin)).body.streams.map((s: { agent_id: string }) => s.agent_id).sort(), ['public', 'secret'])
  const taskId = (await json('/agents/secret/status', 'GET', undefined, admin)).body.task_id
  const refused = await json(`/tasks/${taskId}/cancel`, 'POST')
  const unknown = await json('/tasks/no-such-task/cancel', 'POST')
  t.equal(refused.statusCode, 404, 'a task of an agent the caller may not see answers like an unknown task')
  t.same({ ...refused.body, message: refused.body.message.replace(taskId, 'ID') }, { ...unknown.body, message: unknown.body.message.replace('no-such-task', 'ID') }, 'the same body: no oracle')
  t.equal((await json(`/tasks/${taskId}/cancel`, 'POST', undefined, admin)).statusCode, 200)
  t.equal((await status('public')).state, 'active')
})

t.test('orphans: on ready the plugin stops tasks the adapter reports that it does not own, and logs each', async (t) => {
  const adapter = new TestAdapter()
  const reported = [{ agentId: 'edge-1', taskId: 'old-1' }, { agentId: 'edge-2', taskId: 'old-2' }, { bogus: true }]
  Object.assign(adapter, { listStreamingTasks: async () => reported })
  const { app, logs } = await startServer(t, { adapter })
  t.same(adapter.stopCalls.map((c) => [c.agentId, c.taskId]), [['edge-1', 'old-1'], ['edge-2', 'old-2']])
  t.equal(logs.filter((l) => /Stopping orphaned metrics streaming task old-\d of agent edge-\d/.test(l.msg)).length, 2)

  // Later calls leave tasks this process owns alone.
  await app.streamLifecycle.hold('edge-3', { intervalSeconds: 5 })
  reported.splice(0, reported.length, { agentId: 'edge-3', taskId: adapter.startCalls[0]!.taskId }, { agentId: 'edge-4', taskId: 'old-4' })
  t.same(await app.streamLifecycle.stopOrphans(), [{ agentId: 'edge-4', taskId: 'old-4' }])
  t.equal(app.streamLifecycle.status('edge-3').state, 'active')
})

t.test('orphans: a failing listStreamingTasks is logged and the server still starts', async (t) => {
  const adapter = new TestAdapter()
  Object.assign(adapter, { listStreamingTasks: async () => { throw new Error('registry offline') } })
  const { json, logs } = await startServer(t, { adapter })
  t.equal((await json('/streams')).statusCode, 200)
  t.ok(logs.some((l) => l.level === 50 && /Could not list streaming tasks/.test(l.msg)))
  const failingStop = new TestAdapter()
  Object.assign(failingStop, { listStreamingTasks: async () => [{ agentId: 'x', taskId: 'old' }] })
  failingStop.stopMetricsStreaming = async () => { throw new Error('agent gone') }
  const second = await startServer(t, { adapter: failingStop })
  t.ok(second.logs.some((l) => /Failed to stop orphaned task old of agent x/.test(l.msg)))
})

t.test('bad input gets a 4xx JSON error and leaves the server healthy', async (t) => {
  const { baseUrl, json, sse, adapter } = await startServer(t)
  const cases: Array<[string, number]> = [
    ['/agents/a/metrics/stream?interval_seconds=1&interval_seconds=2', 400],
    ['/agents/a/metrics/stream?interval_seconds=%ZZ', 400],
    ['/agents/%E0%A4%A/status', 400],
    ['/agents/a/metrics/stream?interval_seconds=-5', 400],
    ['/agents/a/metrics/stream?interval_seconds=1.0.0', 400],
    ['/agents/a/metrics/stream?interval_seconds=99999999999999999999', 400]
  ]
  for (const [path, code] of cases) {
    const response = await json(path)
    t.equal(response.statusCode, code, path)
    t.match(response.body, { statusCode: code, code: String, message: String })
  }
  const raw = connect(Number(new URL(baseUrl).port), '127.0.0.1')
  raw.write(`GET /agents/a/metrics/stream HTTP/1.1\r\nHost: x\r\nX-Huge: ${'z'.repeat(20_000)}\r\n\r\n`)
  let answer = ''
  raw.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  await waitFor(() => answer.length > 0, 'an answer to oversized headers')
  raw.destroy()
  t.match(answer, /^HTTP\/1\.1 431 /, 'oversized headers are refused (431) before any route runs')
  const body = await json('/agents/a/metrics/streaming/start', 'POST', ['not', 'an', 'object'])
  t.equal(body.statusCode, 400)
  const lenient = await sse('/agents/a/metrics/stream?unknown=1&interval_seconds=2')
  t.equal(lenient.statusCode, 200, 'unknown query parameters are ignored')
  lenient.close()
  t.equal(adapter.startCalls.length, 1, 'only the valid request started a stream')
  t.equal((await json('/agents/a/status')).statusCode, 200, 'still healthy')
})

t.test('next to @fastify/compress the stream is neither compressed nor buffered', async (t) => {
  const { sse, adapter } = await startServer(t, {}, async (app) => { await app.register(compress, { global: true, threshold: 0 }) })
  const client = await sse('/agents/agent1/metrics/stream', { 'accept-encoding': 'gzip, br' })
  t.equal(client.headers['content-encoding'], undefined)
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('agent1', { now: true })
  t.match(await client.next(), { event: 'metrics', data: '{"now":true}' }, 'the sample arrives at once')
  client.close()
})

t.test('app.close() with 100 open clients resolves within the adapter timeout even if the adapter hangs', async (t) => {
  const adapter = new TestAdapter()
  adapter.stopMetricsStreaming = () => new Promise(() => {})
  const { app, sse } = await startServer(t, { adapter, adapterTimeoutMs: 500, maxClientsPerAgent: 0 })
  const clients = await Promise.all(Array.from({ length: 100 }, (_, i) => sse(`/agents/agent${i % 5}/metrics/stream`)))
  await waitFor(() => app.sseConnections().length === 100 && adapter.liveTasks.size === 5, '100 clients on 5 agents')
  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  t.ok(took < 1500, `closed in ${took} ms (adapter timeout 500 ms)`)
  await waitFor(() => clients.every((client) => client.ended), 'every response to end')
  t.ok(clients.every((client) => client.raw.includes('event: end\ndata: {"reason":"server-shutdown"}')))
  t.same(app.sseConnections(), [])
})
