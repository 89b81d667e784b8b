import { EventSource } from 'eventsource'
import t from 'tap'
import { AgentStreamClient, AgentStreamClientError, type EventSourceLike } from '../lib/client/index.js'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

t.test('the typed client drives every route of a real server', async (t) => {
  const { baseUrl, adapter } = await startServer(t, { prefix: '/api', stopDelayMs: 100 })
  const client = new AgentStreamClient({ baseUrl: `${baseUrl}/api/`, EventSource })
  t.match(await client.getStatus('agent1'), { agent_id: 'agent1', streaming_active: false, state: 'idle' })
  const started = await client.startMetricsStreaming('agent1', { interval_seconds: 2 })
  t.match(started, { streaming_active: true, manual_hold: true, interval_seconds: 2, task_id: 'task-1' })
  t.same((await client.listStreams()).streams.map((s) => s.agent_id), ['agent1'])
  t.same(await client.getCurrentMetrics('agent1'), { agent_id: 'agent1', cpu_percent: 12.5 })
  t.match(await client.stopMetricsStreaming('agent1'), { manual_hold: false })
  const again = await client.startMetricsStreaming('agent1')
  t.match(await client.cancelTask(again.task_id!), { state: 'idle' })
  t.same(adapter.liveTasks.size, 0)
})

t.test('HTTP errors become AgentStreamClientError with statusCode, code and message', async (t) => {
  const adapter = new TestAdapter({ knownAgents: ['known'] })
  const { baseUrl } = await startServer(t, { adapter })
  const client = new AgentStreamClient({ baseUrl, EventSource })
  const unknown = await client.getStatus('ghost').catch((err: unknown) => err)
  t.type(unknown, AgentStreamClientError)
  t.match(unknown, { statusCode: 404, code: 'FST_ERR_AGENT_SSE_UNKNOWN_AGENT', error: 'Not Found', message: /unknown agent "ghost"/ })
  t.match(await client.cancelTask('nope').catch((err: unknown) => err), { statusCode: 404, code: 'FST_ERR_AGENT_SSE_UNKNOWN_TASK' })
  t.match(await client.startMetricsStreaming('known', { interval_seconds: 0 }).catch((err: unknown) => err), { statusCode: 400, code: 'FST_ERR_VALIDATION' })
  t.match(await client.getStatus('bad id').catch((err: unknown) => err), { statusCode: 400 })

  const plain = await startServer(t, {}, (app) => {
    app.get('/proxy/agents/:id/status', async (_request, reply) => reply.code(502).type('text/plain').send('upstream down'))
  })
  const behindProxy = new AgentStreamClient({ baseUrl: `${plain.baseUrl}/proxy` })
  t.match(await behindProxy.getStatus('a').catch((err: unknown) => err), { statusCode: 502, code: 'FST_ERR_AGENT_SSE_CLIENT_HTTP', error: 'Bad Gateway' })
})

t.test('streamMetrics delivers samples with ids, and event: end closes the EventSource for good', async (t) => {
  const { baseUrl, adapter, app } = await startServer(t, { retryMs: 20 })
  let connections = 0
  app.server.on('request', (request) => { if (request.url?.includes('/metrics/stream')) connections++ })
  const client = new AgentStreamClient({ baseUrl, EventSource })
  const samples: Array<[unknown, number]> = []
  const ends: string[] = []
  const source: EventSourceLike = client.streamMetrics('agent1', 1, {
    onMetrics: (sample, id) => samples.push([sample, id]),
    onEnd: (reason) => ends.push(reason)
  })
  t.teardown(() => source.close())
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('agent1', { cpu: 1 })
  adapter.push('agent1', { cpu: 2 })
  await waitFor(() => samples.length === 2, 'two samples')
  t.same(samples, [[{ cpu: 1 }, 1], [{ cpu: 2 }, 2]])
  t.equal(adapter.startCalls[0]!.intervalSeconds, 1)
  await app.streamLifecycle.cancelTask('task-1')
  await waitFor(() => ends.length === 1, 'the end event')
  t.same(ends, ['cancelled'])
  t.equal(source.readyState, 2, 'CLOSED')
  await new Promise((resolve) => setTimeout(resolve, 300)) // > 10 × retry
  t.equal(connections, 1, 'no reconnection after a terminal end')
})

t.test('streamMetrics reports the server\'s error event and lets EventSource retry', async (t) => {
  const adapter = new TestAdapter()
  let failures = 1
  const start = adapter.startMetricsStreaming.bind(adapter)
  adapter.startMetricsStreaming = (agentId, options, sink) => failures-- > 0 ? Promise.reject(new Error('busy')) : start(agentId, options, sink)
  const { baseUrl } = await startServer(t, { adapter, retryMs: 20 })
  const client = new AgentStreamClient({ baseUrl, EventSource })
  const errors: AgentStreamClientError[] = []
  const gaps: unknown[] = []
  const source = client.streamMetrics('agent1', undefined, { onServerError: (err) => errors.push(err), onGap: (gap) => gaps.push(gap) })
  t.teardown(() => source.close())
  await waitFor(() => errors.length === 1, 'the error event')
  t.match(errors[0], { statusCode: 502, code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', message: /busy/ })
  await waitFor(() => adapter.liveTasks.size === 1, 'the retry to start the stream')
  t.same(gaps, [])
})

t.test('without an EventSource or fetch the client says what to pass', async (t) => {
  const client = new AgentStreamClient({ baseUrl: 'http://127.0.0.1:1', fetch: undefined })
  t.throws(() => client.streamMetrics('a'), /no EventSource available/)
  t.throws(() => new AgentStreamClient({} as never), /baseUrl must be a string/)
  const noFetch = new AgentStreamClient({ baseUrl: 'http://127.0.0.1:1', EventSource })
  Object.assign(noFetch, { fetchImpl: undefined })
  await t.rejects(noFetch.getStatus('a'), /no fetch available/)
})
