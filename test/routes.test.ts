import Fastify from 'fastify'
import t from 'tap'
import agentSse, { StreamLifecycle } from '../lib/index.js'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

const errorShape = { statusCode: Number, code: String, error: String, message: String }

t.test('status of an agent nobody watches', async (t) => {
  const { json } = await startServer(t)
  const response = await json('/agents/agent1/status')
  t.equal(response.statusCode, 200)
  t.same(response.body, {
    agent_id: 'agent1',
    streaming_active: false,
    state: 'idle',
    sse_clients: 0,
    manual_hold: false,
    task_id: null,
    interval_seconds: null,
    started_at: null,
    requested_intervals: []
  })
})

t.test('invalid agent ids get a 400 JSON error on every agent route; over 100 characters Fastify answers 414', async (t) => {
  const { json, adapter } = await startServer(t)
  const routes: Array<['GET' | 'POST', string]> = [
    ['GET', '/agents/%s/metrics/stream'],
    ['POST', '/agents/%s/metrics/streaming/start'],
    ['POST', '/agents/%s/metrics/streaming/stop'],
    ['GET', '/agents/%s/metrics/current'],
    ['GET', '/agents/%s/status']
  ]
  for (const [method, route] of routes) {
    for (const bad of ['bad%20id', 'semi%3Bcolon', '%C3%A9t%C3%A9']) {
      const response = await json(route.replace('%s', bad), method)
      t.equal(response.statusCode, 400, `${method} ${route} with ${bad}`)
      t.match(response.body, { ...errorShape, statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request' })
    }
  }
  t.equal((await json(`/agents/${'a'.repeat(101)}/status`)).statusCode, 414)
  t.equal((await json(`/agents/${'a'.repeat(100)}/status`)).statusCode, 200)
  t.equal((await json('/agents/edge-7.eu_west:1/status')).statusCode, 200, 'dots, underscores, colons and dashes are allowed')
  t.equal(adapter.startCalls.length, 0)
})

t.test('invalid intervals get a 400 JSON error and start nothing', async (t) => {
  const { json, adapter } = await startServer(t, { minIntervalSeconds: 2, maxIntervalSeconds: 60 })
  for (const bad of ['0', '1', '61', '1.5', 'abc', '-3', '']) {
    const stream = await json(`/agents/agent1/metrics/stream?interval_seconds=${bad}`)
    t.equal(stream.statusCode, 400, `stream interval_seconds=${bad}`)
    t.match(stream.body, { ...errorShape, code: 'FST_ERR_VALIDATION' })
  }
  for (const bad of [0, 61, 2.5, 'abc', null]) {
    const start = await json('/agents/agent1/metrics/streaming/start', 'POST', { interval_seconds: bad })
    t.equal(start.statusCode, 400, `start interval_seconds=${JSON.stringify(bad)}`)
    t.same(start.body, { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'body/interval_seconds must be an integer from 2 to 60' })
  }
  t.equal(adapter.startCalls.length, 0)
})

t.test('unknown agents get 404 on every agent route when the adapter has agentExists', async (t) => {
  const adapter = new TestAdapter({ knownAgents: ['known'] })
  const { json } = await startServer(t, { adapter })
  for (const [method, path] of [
    ['GET', '/agents/ghost/metrics/stream'],
    ['POST', '/agents/ghost/metrics/streaming/start'],
    ['POST', '/agents/ghost/metrics/streaming/stop'],
    ['GET', '/agents/ghost/metrics/current'],
    ['GET', '/agents/ghost/status']
  ] as const) {
    const response = await json(path, method)
    t.equal(response.statusCode, 404, `${method} ${path}`)
    t.same(response.body, { statusCode: 404, code: 'FST_ERR_AGENT_SSE_UNKNOWN_AGENT', error: 'Not Found', message: 'fastify-agent-sse: unknown agent "ghost"' })
  }
  t.equal(adapter.startCalls.length, 0, 'no start attempt for an unknown agent')
  t.equal((await json('/agents/known/status')).statusCode, 200)
})

t.test('a failing or hanging agentExists answers 502/504', async (t) => {
  const adapter = new TestAdapter()
  let mode: 'throw' | 'hang' = 'throw'
  adapter.agentExists = () => mode === 'throw' ? Promise.reject(new Error('registry down')) : new Promise<boolean>(() => {})
  const { json } = await startServer(t, { adapter, adapterTimeoutMs: 100 })
  t.match((await json('/agents/a/status')).body, { statusCode: 502, code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED' })
  mode = 'hang'
  t.match((await json('/agents/a/metrics/stream')).body, { statusCode: 504, code: 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT' })
})

t.test('manual start holds the stream; it answers once active; repeated starts are idempotent; stop releases', async (t) => {
  const { json, adapter, sse, status } = await startServer(t, { defaultIntervalSeconds: 7, stopDelayMs: 100 })
  const started = await json('/agents/agent1/metrics/streaming/start', 'POST')
  t.equal(started.statusCode, 200, 'a POST with no body uses the default interval')
  t.match(started.body, { agent_id: 'agent1', streaming_active: true, state: 'active', manual_hold: true, sse_clients: 0, task_id: 'task-1', interval_seconds: 7 })
  t.ok(!Number.isNaN(Date.parse(started.body.started_at)))
  const again = await json('/agents/agent1/metrics/streaming/start', 'POST', { interval_seconds: 7 })
  t.equal(again.statusCode, 200)
  t.equal(adapter.startCalls.length, 1, 'idempotent')
  const list = await json('/streams')
  t.same(list.body, { streams: [started.body], next_cursor: null })

  const client = await sse('/agents/agent1/metrics/stream')
  await waitFor(async () => (await status('agent1')).sse_clients === 1, 'the client')
  const stopped = await json('/agents/agent1/metrics/streaming/stop', 'POST')
  t.equal(stopped.statusCode, 200)
  t.match(stopped.body, { manual_hold: false, state: 'active', sse_clients: 1 }, 'SSE clients keep streaming')
  adapter.push('agent1', { still: 'streaming' })
  t.match(await client.next(), { event: 'metrics' })
  client.close()
  await waitFor(() => adapter.liveTasks.size === 0, 'the stop after the window')
  t.same((await json('/streams')).body, { streams: [], next_cursor: null })
  t.equal((await json('/agents/agent1/metrics/streaming/stop', 'POST')).statusCode, 200, 'stop without a hold is fine')
})

t.test('a manual start that fails answers 502/504 and leaves no hold', async (t) => {
  const adapter = new TestAdapter({ autoAnswer: false })
  const { json, status } = await startServer(t, { adapter, adapterTimeoutMs: 150 })
  const pending = json('/agents/agent1/metrics/streaming/start', 'POST', { interval_seconds: 5 })
  await waitFor(() => adapter.startCalls.length === 1, 'the start call')
  adapter.startCalls[0]!.answer.reject(new Error('refused'))
  const failed = await pending
  t.equal(failed.statusCode, 502)
  t.match(failed.body, { statusCode: 502, code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', error: 'Bad Gateway', message: /refused/ })
  t.match(await status('agent1'), { manual_hold: false, state: 'idle' })
  const timedOut = await json('/agents/agent1/metrics/streaming/start', 'POST', { interval_seconds: 5 })
  t.equal(timedOut.statusCode, 504)
  t.match(timedOut.body, { code: 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT', error: 'Gateway Timeout' })
  t.match(await status('agent1'), { manual_hold: false })
})

t.test('current metrics come from the adapter; failures and timeouts map to 502/504', async (t) => {
  const adapter = new TestAdapter()
  const { json } = await startServer(t, { adapter, adapterTimeoutMs: 100 })
  const ok = await json('/agents/agent1/metrics/current')
  t.equal(ok.statusCode, 200)
  t.same(ok.body, { agent_id: 'agent1', cpu_percent: 12.5 })
  adapter.getCurrentMetrics = async () => { throw new Error('no answer') }
  t.match((await json('/agents/agent1/metrics/current')).body, { statusCode: 502, message: /no answer/ })
  adapter.getCurrentMetrics = () => new Promise(() => {})
  t.match((await json('/agents/agent1/metrics/current')).body, { statusCode: 504, code: 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT' })
})

t.test('cancel answers 404 for unknown or over-long task ids', async (t) => {
  const { json } = await startServer(t)
  const unknown = await json('/tasks/nope/cancel', 'POST')
  t.same(unknown.body, { statusCode: 404, code: 'FST_ERR_AGENT_SSE_UNKNOWN_TASK', error: 'Not Found', message: 'fastify-agent-sse: no live metrics streaming task "nope"' })
  t.equal((await json(`/tasks/${'x'.repeat(300)}/cancel`, 'POST')).statusCode, 414, "beyond Fastify's maxParamLength")
})

t.test('the prefix option places the routes; the decorator reaches the host', async (t) => {
  const { app, json } = await startServer(t, { prefix: '/api/' })
  t.type(app.streamLifecycle, StreamLifecycle)
  t.equal((await json('/api/agents/a/status')).statusCode, 200)
  t.equal((await json('/api/streams')).statusCode, 200)
  t.equal((await json('/agents/a/status')).statusCode, 404)
})

t.test('register-level prefix is ignored by fastify-plugin; the option is the way', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(agentSse, { adapter: new TestAdapter(), prefix: '/v1' })
  const response = await app.inject('/v1/streams')
  t.equal(response.statusCode, 200)
  t.same(response.json(), { streams: [], next_cursor: null })
})

t.test('the plugin works over HTTP/2 (no Connection header on the stream)', async (t) => {
  const http2 = await import('node:http2')
  const adapter = new TestAdapter()
  const app = Fastify({ http2: true })
  t.teardown(() => app.close())
  await app.register(agentSse, { adapter, stopDelayMs: 50 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const session = http2.connect(`http://127.0.0.1:${port}`)
  t.teardown(() => session.close())
  const stream = session.request({ ':path': '/agents/h2/metrics/stream' })
  let text = ''
  const headers = await new Promise<Record<string, unknown>>((resolve) => stream.on('response', resolve))
  stream.on('data', (chunk: Buffer) => { text += chunk.toString() })
  t.equal(headers[':status'], 200)
  t.match(headers['content-type'], /text\/event-stream/)
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('h2', { over: 'h2' })
  await waitFor(() => text.includes('data: {"over":"h2"}'), 'the sample')
  t.match(text, /^retry: \d+\n\nid: 1\nevent: metrics\n/)
  stream.close()
  await waitFor(() => adapter.liveTasks.size === 0, 'the stop after the client left')
})

t.test('HEAD on the stream route starts nothing', async (t) => {
  const { baseUrl, adapter, dispatcher } = await startServer(t)
  const { request } = await import('undici')
  const head = await request(`${baseUrl}/agents/agent1/metrics/stream`, { method: 'HEAD', dispatcher })
  await head.body.text()
  t.equal(head.statusCode, 404)
  t.equal(adapter.startCalls.length, 0)
})

t.test('a POST start with Content-Type: application/json and no body uses the defaults', async (t) => {
  const { baseUrl, dispatcher } = await startServer(t, { defaultIntervalSeconds: 4 })
  const { request } = await import('undici')
  const response = await request(`${baseUrl}/agents/agent1/metrics/streaming/start`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' } })
  t.equal(response.statusCode, 200)
  t.match(await response.body.json(), { manual_hold: true, interval_seconds: 4 })
  const bad = await request(`${baseUrl}/agents/agent1/metrics/streaming/start`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' }, body: '{"__proto__":{"x":1}}' })
  t.equal(bad.statusCode, 400, "Fastify's JSON parser still guards non-empty bodies")
  await bad.body.text()
})

t.test('a client that leaves while an async guard runs leaves nothing behind', async (t) => {
  const adapter = new TestAdapter()
  adapter.agentExists = () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 150))
  const { app, baseUrl, dispatcher, logs } = await startServer(t, { adapter, stopDelayMs: 50 })
  const { request } = await import('undici')
  const abort = new AbortController()
  const pending = request(`${baseUrl}/agents/a1/metrics/stream`, { dispatcher, signal: abort.signal }).catch(() => 'aborted')
  setTimeout(() => abort.abort(), 30)
  t.equal(await pending, 'aborted')
  await waitFor(() => logs.some((l) => l.msg === 'SSE client left before its stream opened'), 'the handler to notice')
  t.equal(app.streamLifecycle.status('a1').subscribers, 0)
  t.same(app.sseConnections(), [])
  t.equal(adapter.startCalls.length, 0, 'no agent stream for a client that is gone')
})
