import Fastify from 'fastify'
import t from 'tap'
import agentSse, { StreamLifecycle, type AgentSseOptions } from '../lib/index.js'
import { TestAdapter } from './helpers/test-adapter.js'

async function registerWith (options: Record<string, unknown>) {
  const app = Fastify()
  try {
    await app.register(agentSse, options as unknown as AgentSseOptions)
    await app.ready()
    return app
  } finally {
    await app.close()
  }
}

t.test('a bad option fails register with a message naming it', async (t) => {
  const adapter = new TestAdapter()
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{}, /option "adapter" is required/],
    [{ adapter: null }, /option "adapter" is required/],
    [{ adapter: { startMetricsStreaming () {} } }, /option "adapter.stopMetricsStreaming" must be a function/],
    [{ adapter: { startMetricsStreaming () {}, stopMetricsStreaming () {} } }, /option "adapter.getCurrentMetrics"/],
    [{ adapter, stopDelayMs: -1 }, /option "stopDelayMs" must be an integer >= 0, got -1/],
    [{ adapter, stopDelayMs: '2000' }, /option "stopDelayMs" must be an integer >= 0, got '2000'/],
    [{ adapter, stopDelayMs: Number.NaN }, /option "stopDelayMs"/],
    [{ adapter, defaultIntervalSeconds: 0 }, /option "defaultIntervalSeconds" must be an integer >= 1/],
    [{ adapter, minIntervalSeconds: 1.5 }, /option "minIntervalSeconds"/],
    [{ adapter, maxIntervalSeconds: 'x' }, /option "maxIntervalSeconds"/],
    [{ adapter, minIntervalSeconds: 10, maxIntervalSeconds: 5 }, /option "maxIntervalSeconds" must be >= minIntervalSeconds \(10\), got 5/],
    [{ adapter, defaultIntervalSeconds: 5000 }, /option "defaultIntervalSeconds" must be within minIntervalSeconds..maxIntervalSeconds \(1..3600\), got 5000/],
    [{ adapter, minIntervalSeconds: 10 }, /option "defaultIntervalSeconds" must be within/],
    [{ adapter, adapterTimeoutMs: 0 }, /option "adapterTimeoutMs" must be an integer >= 1/],
    [{ adapter, retryMs: -5 }, /option "retryMs" must be an integer >= 0/],
    [{ adapter, prefix: 'api' }, /option "prefix" must be a string that is empty or starts with "\/"/],
    [{ adapter, prefix: 42 }, /option "prefix"/],
    [{ adapter, replayBufferSize: 0 }, /option "replayBufferSize" must be an integer >= 1/],
    [{ adapter, heartbeatIntervalMs: -1 }, /option "heartbeatIntervalMs" must be an integer >= 0 \(0 disables heartbeats\)/],
    [{ adapter, maxBufferedBytes: 100 }, /option "maxBufferedBytes" must be an integer >= 1024, got 100/],
    [{ adapter, stallTimeoutMs: 0 }, /option "stallTimeoutMs"/],
    [{ adapter, maxClients: -1 }, /option "maxClients" must be an integer >= 0 \(0 = no limit\)/],
    [{ adapter, maxClientsPerAgent: 1.5 }, /option "maxClientsPerAgent"/],
    [{ adapter, maxHolds: -1 }, /option "maxHolds" must be an integer >= 0/],
    [{ adapter, stopDelay: 5 }, /option "stopDelay" is not an option of fastify-agent-sse \(did you mean "stopDelayMs"\?\)/],
    [{ adapter, prefx: '/api' }, /option "prefx" is not an option of fastify-agent-sse \(did you mean "prefix"\?\)/],
    [{ adapter, colour: 'blue' }, /option "colour" is not an option of fastify-agent-sse$/],
    [{ adapter, maxAgentsPerStream: 0 }, /option "maxAgentsPerStream" must be an integer >= 1, got 0/],
    [{ adapter, flushIntervalMs: 1001 }, /option "flushIntervalMs" must be an integer from 0 \(at the end of the tick\) to 1000, got 1001/],
    [{ adapter, authorizeAgent: true }, /option "authorizeAgent" must be a function/],
    [{ adapter: { startMetricsStreaming () {}, stopMetricsStreaming () {}, getCurrentMetrics () {}, changeInterval: 'yes' } }, /option "adapter.changeInterval" must be a function/],
    [{ adapter: { startMetricsStreaming () {}, stopMetricsStreaming () {}, getCurrentMetrics () {}, listStreamingTasks: [] } }, /option "adapter.listStreamingTasks"/]
  ]
  for (const [options, message] of cases) {
    await t.rejects(registerWith(options), { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION', message }, String(message))
  }
})

t.test('a standalone StreamLifecycle checks its options with the plugin\'s rules and messages', async (t) => {
  const adapter = new TestAdapter()
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ adapter, stopDelayMs: -1 }, 'stopDelayMs'],
    [{ adapter, adapterTimeoutMs: 0 }, 'adapterTimeoutMs'],
    [{ adapter, replayBufferSize: 2.5 }, 'replayBufferSize'],
    [{ adapter, maxHolds: '10' }, 'maxHolds'],
    [{ adapter: {} }, 'adapter.startMetricsStreaming']
  ]
  for (const [options, name] of cases) {
    const fromPlugin = await registerWith(options).then(() => null, (err: Error) => err.message)
    t.throws(() => new StreamLifecycle(options as never), { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION', message: fromPlugin ?? 'a plugin error' }, `${name}: the same message as the plugin's`)
    t.match(fromPlugin, `option "${name}"`)
  }
  t.throws(() => new StreamLifecycle({ adapter, stopDelay: 5 } as never), { message: 'fastify-agent-sse: option "stopDelay" is not an option of StreamLifecycle (did you mean "stopDelayMs"?)' })
  const lifecycle = new StreamLifecycle({ adapter })
  t.same([lifecycle.stopDelayMs, lifecycle.adapterTimeoutMs, lifecycle.replayBufferSize, lifecycle.maxHolds], [2000, 10000, 16, 1000], 'the plugin\'s defaults')
  await lifecycle.close()
})

t.test('defaults apply when options are omitted', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(agentSse, { adapter: new TestAdapter() })
  await app.ready()
  t.equal(app.streamLifecycle.stopDelayMs, 2000)
  t.equal(app.streamLifecycle.adapterTimeoutMs, 10000)
  const bad = await app.inject('/agents/a/metrics/stream?interval_seconds=3601')
  t.equal(bad.statusCode, 400, 'maxIntervalSeconds defaults to 3600')
  const low = await app.inject('/agents/a/metrics/stream?interval_seconds=0')
  t.equal(low.statusCode, 400, 'minIntervalSeconds defaults to 1')
})

t.test('registering twice in one context fails with a clear error; in two scopes, two prefixes each have their own lifecycle', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(agentSse, { adapter: new TestAdapter() })
  await t.rejects(async () => { await app.register(agentSse, { adapter: new TestAdapter() }) }, {
    code: 'FST_ERR_AGENT_SSE_ALREADY_REGISTERED',
    message: /already registered in this encapsulation context.*register each inside its own plugin/
  })

  const two = Fastify()
  t.teardown(() => two.close())
  const adapters = { a: new TestAdapter(), b: new TestAdapter() }
  const lifecycles: Record<string, StreamLifecycle> = {}
  for (const name of ['a', 'b'] as const) {
    await two.register(async (scope) => {
      await scope.register(agentSse, { adapter: adapters[name], prefix: `/${name}` })
      lifecycles[name] = scope.streamLifecycle
    })
  }
  await two.ready()
  const started = await two.inject({ method: 'POST', url: '/b/agents/x/metrics/streaming/start' })
  t.equal(started.statusCode, 200)
  t.same([adapters.a.startsFor('x'), adapters.b.startsFor('x')], [0, 1], 'the /b registration drives its own adapter')
  t.not(lifecycles.a, lifecycles.b)
  t.equal(lifecycles.b!.status('x').state, 'active')
  t.equal((await two.inject('/a/agents/x/status')).json().state, 'idle', '/a has its own counts')
})
