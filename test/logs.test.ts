import t from 'tap'
import type { LogLevel } from 'fastify'
import { startServer, waitFor, type LogRecord } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

// The plugin's log lines as an operator reads them: at the level `register` asked for, and
// each failure once, with its cause once.

const INFO = 30
const ERROR = 50
const pluginLines = (logs: LogRecord[]) => logs.filter((line) => /metrics streaming|SSE client/.test(line.msg))

t.test('register\'s logLevel reaches the plugin\'s own lines and its routes', async (t) => {
  for (const logLevel of [undefined, 'warn'] as Array<LogLevel | undefined>) {
    const server = await startServer(t, logLevel === undefined ? {} : { logLevel } as never)
    const started = await server.json('/agents/a/metrics/streaming/start', 'POST', { interval_seconds: 1 })
    t.equal(started.statusCode, 200)
    await server.json('/agents/a/metrics/streaming/stop', 'POST')
    const client = await server.sse('/agents/b/metrics/stream?interval_seconds=1')
    server.adapter.push('b', { cpu: 1 })
    await client.next((event) => event.event === 'metrics', 'a sample')
    client.close()
    await waitFor(() => server.adapter.stopsFor('b') === 1, 'b to stop')
    const infoLines = pluginLines(server.logs).filter((line) => line.level === INFO)
    const requestLines = server.logs.filter((line) => line.msg === 'incoming request' && String((line.req as { url: string }).url).startsWith('/agents/'))
    if (logLevel === undefined) {
      t.ok(infoLines.length >= 4, `without logLevel, the lifecycle and connection lines at info (${infoLines.length})`)
      t.ok(requestLines.length >= 3, 'and the plugin routes\' request lines')
    } else {
      t.same(infoLines.map((line) => line.msg), [], 'logLevel warn: no info line from the plugin')
      t.same(requestLines, [], 'nor from its routes')
    }
  }
})

t.test('a failed adapter start is logged once, at error, with its cause once', async (t) => {
  const adapter = new TestAdapter({ autoAnswer: false })
  const server = await startServer(t, { adapter })
  const answer = server.json('/agents/a/metrics/streaming/start', 'POST')
  await waitFor(() => adapter.startCalls.length === 1, 'the start call')
  adapter.startCalls[0]!.answer.reject(new Error('transport exploded'))
  const response = await answer
  t.equal(response.statusCode, 502)
  t.match(response.body, { code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', message: 'fastify-agent-sse: adapter startMetricsStreaming for agent "a" failed: transport exploded' })

  const errors = server.logs.filter((line) => line.level >= ERROR)
  t.equal(errors.length, 1, `one error line (${errors.map((line) => line.msg).join(' | ')})`)
  const line = errors[0]!
  t.match(line, { agentId: 'a', msg: /Failed to start metrics streaming for agent a/ })
  const said = `${line.msg} ${(line.err as { message: string }).message}`
  t.equal(said.split('transport exploded').length - 1, 1, `the cause said once: "${said}"`)
  t.match(line, { code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', err: { stack: /transport exploded/ } }, 'with the plugin\'s code and the adapter\'s own stack')

  // The same failure reaching an SSE client is also logged once.
  const client = await server.sse('/agents/c/metrics/stream?interval_seconds=1')
  await waitFor(() => adapter.startCalls.length === 2, 'the second start call')
  adapter.startCalls[1]!.answer.reject(new Error('transport exploded'))
  await client.next((event) => event.event === 'error', 'the error frame')
  client.close()
  t.equal(server.logs.filter((line) => line.level >= ERROR).length, 2, 'one more error line for agent c')
})

t.test('a failed one-off read is logged once, by the route, with its cause once', async (t) => {
  const adapter = new TestAdapter()
  adapter.getCurrentMetrics = async () => { throw new Error('agent unreachable') }
  const server = await startServer(t, { adapter })
  const response = await server.json('/agents/a/metrics/current')
  t.equal(response.statusCode, 502)
  t.match(response.body.message, /failed: agent unreachable$/)
  const errors = server.logs.filter((line) => line.level >= ERROR)
  t.equal(errors.length, 1, `one error line (${errors.map((line) => line.msg).join(' | ')})`)
  t.match(errors[0], { reqId: String, code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', err: { message: 'agent unreachable' } })
})

t.test('an error that is not an adapter failure still reaches the host\'s error handler', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, {}, (app) => {
    app.setErrorHandler((err: Error & { statusCode?: number }, _request, reply) => {
      seen.push((err as { code?: string }).code ?? '')
      reply.code(err.statusCode ?? 500).send({ statusCode: err.statusCode ?? 500, error: 'Host', message: `host handler: ${err.message}` })
    })
  })
  const response = await server.json('/agents/a/metrics/stream?interval_seconds=0')
  t.equal(response.statusCode, 400)
  t.match(response.body, { error: 'Host', message: /^host handler: / })
  t.same(seen, ['FST_ERR_VALIDATION'])
})

t.test('a stream that fails or ends while a manual start waits: logged once by the lifecycle, not again by the route', async (t) => {
  const adapter = new TestAdapter({ autoAnswer: false })
  const server = await startServer(t, { adapter })
  const failing = server.json('/agents/a/metrics/streaming/start', 'POST')
  await waitFor(() => adapter.startCalls.length === 1, 'the start call')
  adapter.startCalls[0]!.sink.error(new Error('socket reset'))
  t.equal((await failing).statusCode, 502)
  const errors = server.logs.filter((line) => line.level >= ERROR)
  t.same(errors.map((line) => line.msg), ['Metrics stream of agent a failed'], 'one error line, the lifecycle\'s')

  const ending = server.json('/agents/b/metrics/streaming/start', 'POST')
  await waitFor(() => adapter.startCalls.length === 2, 'the second start call')
  adapter.startCalls[1]!.sink.end('agent-offline')
  const ended = await ending
  t.equal(ended.statusCode, 502)
  t.match(ended.body, { code: 'FST_ERR_AGENT_SSE_STREAM_ENDED' })
  t.equal(server.logs.filter((line) => line.level >= ERROR).length, 1, 'an agent ending its task is not an error line')
  t.ok(server.logs.some((line) => line.level === INFO && /Agent b ended metrics streaming on its own: agent-offline/.test(line.msg)), 'it is an info line')
})

t.test('a throwing authorizeAgent is logged once (its message never sent)', async (t) => {
  const server = await startServer(t, { authorizeAgent: () => { throw new Error('db password=hunter2') } })
  const response = await server.json('/agents/a/status')
  t.equal(response.statusCode, 503)
  t.notMatch(JSON.stringify(response.body), /hunter2/)
  const errors = server.logs.filter((line) => line.level >= ERROR)
  t.equal(errors.length, 1, `one error line (${errors.map((line) => line.msg).join(' | ')})`)
})

t.test('logLevel must be a level of the logger; logSerializers reach the plugin\'s routes', async (t) => {
  await t.rejects(startServer(t, { logLevel: 'verbose' } as never), { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION', message: /option "logLevel" must be one of .*info.*, got "verbose"/ })
  const server = await startServer(t, { logSerializers: { req: (req: { url: string }) => `request to ${req.url}` } } as never)
  await server.json('/agents/a/status')
  t.ok(server.logs.some((line) => line.msg === 'incoming request' && line.req === 'request to /agents/a/status'), 'the route\'s request log used the serializer')
})
