import Fastify from 'fastify'
import { expectAssignable, expectError, expectType } from 'tsd'
import agentSse, {
  agentSse as namedAgentSse,
  FST_ERR_AGENT_SSE_CLOSED,
  FST_ERR_AGENT_SSE_INVALID_OPTION,
  FST_ERR_AGENT_SSE_UNKNOWN_AGENT,
  StreamLifecycle,
  type AgentAdapter,
  type AgentSseOptions,
  type MetricsSink,
  type StreamStatus,
  type Subscription
} from '../dist/esm/index.js'

const adapter: AgentAdapter = {
  async startMetricsStreaming (agentId, { intervalSeconds, signal }, sink) {
    expectType<string>(agentId)
    expectType<number>(intervalSeconds)
    expectType<AbortSignal>(signal)
    expectType<MetricsSink>(sink)
    sink.push({ cpu_percent: 1 })
    sink.end('agent-offline')
    sink.error(new Error('x'))
    return { taskId: 't1' }
  },
  async stopMetricsStreaming (_agentId, _taskId) {},
  async getCurrentMetrics (agentId) { return { agentId } }
}

const app = Fastify()
app.register(agentSse, { adapter })
app.register(namedAgentSse, { adapter, stopDelayMs: 2000, defaultIntervalSeconds: 5, prefix: '/api' })
expectType<StreamLifecycle>(app.streamLifecycle)
expectType<StreamStatus>(app.streamLifecycle.status('a'))
expectType<StreamStatus[]>(app.streamLifecycle.list())
expectType<Promise<StreamStatus | false>>(app.streamLifecycle.cancelTask('t'))
expectType<Promise<StreamStatus | false>>(app.streamLifecycle.cancelTask('t', 'agent1'))
expectType<string[]>(app.streamLifecycle.agentsOfTask('t'))
expectType<{ streams: StreamStatus[], next: string | null }>(app.streamLifecycle.page(null, 100))
expectType<Promise<StreamStatus>>(app.streamLifecycle.hold('a', { intervalSeconds: 5 }))

const status = app.streamLifecycle.status('a')
expectType<boolean>(status.streamingActive)
expectType<'idle' | 'starting' | 'active' | 'lingering' | 'stopping'>(status.state)
expectType<string | null>(status.taskId)
expectType<number>(status.subscribers)
// The wire's snake_case names are the routes' business, not the lifecycle's.
expectError(status.sse_clients)

const sub = app.streamLifecycle.subscribe('a', { intervalSeconds: 5, onSample (sample, id) { expectType<number>(id); expectType<Record<string, unknown>>(sample) } })
expectType<Subscription>(sub)

expectAssignable<AgentSseOptions>({ adapter, retryMs: 3000, adapterTimeoutMs: 10000, minIntervalSeconds: 1, maxIntervalSeconds: 3600 })

// The adapter is required, and options are typed.
expectError(app.register(agentSse, {}))
expectError(app.register(agentSse, { adapter, stopDelayMs: '2000' }))
// An adapter missing a method is not an AgentAdapter.
expectError<AgentAdapter>({ async startMetricsStreaming () { return { taskId: 'x' } } })

// The error classes are typed (issue 16: under `moduleResolution: bundler` they were `any`): literal code and
// status code, and their message arguments. test/package-types.test.ts checks the same under every resolver.
const unknownAgent = new FST_ERR_AGENT_SSE_UNKNOWN_AGENT('agent1')
expectType<'FST_ERR_AGENT_SSE_UNKNOWN_AGENT'>(unknownAgent.code)
expectType<404>(unknownAgent.statusCode)
expectAssignable<Error>(unknownAgent)
expectType<'FST_ERR_AGENT_SSE_INVALID_OPTION'>(FST_ERR_AGENT_SSE_INVALID_OPTION('stopDelayMs', 'must be a number').code)
expectType<503>(new FST_ERR_AGENT_SSE_CLOSED().statusCode)
expectError(new FST_ERR_AGENT_SSE_UNKNOWN_AGENT(42))
expectError(new FST_ERR_AGENT_SSE_CLOSED('unexpected'))

const lifecycle = new StreamLifecycle({ adapter, stopDelayMs: 100, adapterTimeoutMs: 1000 })
expectType<Promise<void>>(lifecycle.close())

// The browser/Node client: typed answers, an EventSource implementation from the `eventsource` package.
import { EventSource } from 'eventsource'
import { AgentStreamClient, AgentStreamClientError, type StreamStatus as ClientStreamStatus } from '../dist/esm/client/index.js'

const client = new AgentStreamClient({ baseUrl: 'http://127.0.0.1:3000/api', EventSource })
expectType<Promise<ClientStreamStatus>>(client.getStatus('agent1'))
expectType<Promise<{ streams: ClientStreamStatus[], next_cursor: string | null }>>(client.listStreams())
expectType<Promise<{ streams: ClientStreamStatus[], next_cursor: string | null }>>(client.listStreams({ limit: 50, cursor: 'agent-9' }))
expectType<Promise<ClientStreamStatus>>(client.startMetricsStreaming('agent1', { interval_seconds: 5 }))
expectType<Promise<ClientStreamStatus>>(client.cancelTask('t'))
client.streamMetrics('agent1', 5, {
  onMetrics (sample, id) { expectType<Record<string, unknown>>(sample); expectType<number>(id) },
  onEnd (reason) { expectType<string>(reason) },
  onServerError (err) { expectType<AgentStreamClientError>(err); expectType<number>(err.statusCode); expectType<string>(err.code) }
})
expectError(client.startMetricsStreaming('agent1', { interval_seconds: '5' }))

// Cluster mode: the Redis coordinator from its own entry point, typed against ioredis.
{
  const { Redis } = await import('ioredis')
  const { redisCoordinator } = await import('../dist/esm/redis/index.js')
  const coordinator = redisCoordinator({ redis: new Redis(), keyPrefix: 'agent-sse:', leaseMs: 10000, instanceId: 'a' })
  expectAssignable<AgentSseOptions['coordinator']>(coordinator)
  app.register(agentSse, { adapter, coordinator })
  expectError(redisCoordinator({}))
  expectError(redisCoordinator({ redis: new Redis(), leaseMs: '10s' }))
  expectType<string | null | undefined>(({} as StreamStatus).owner)
}
