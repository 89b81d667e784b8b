import type { FastifyRequest } from 'fastify'
import type { AgentAdapter } from './adapter.js'
import { FST_ERR_AGENT_SSE_INVALID_OPTION } from './errors.js'
import type { Coordinator } from './lifecycle/coordinator.js'
import { assertAdapter, assertCoordinator, assertKnownOptions, assertOptionalFunction, pluginOptionRules, resolveScalarOptions } from './option-rules.js'

/** Options of the fastify-agent-sse plugin. */
export interface AgentSseOptions {
  /** The host's agent transport. Required. */
  adapter: AgentAdapter
  /**
   * Path prefix of every route (fastify-plugin ignores `register`'s own `prefix`).
   * @default ''
   */
  prefix?: string
  /**
   * How long an agent keeps streaming after its last SSE client left, so quick reconnects don't cycle start/stop.
   * @default 2000
   */
  stopDelayMs?: number
  /**
   * Interval used when a client does not pass `interval_seconds`.
   * @default 5
   */
  defaultIntervalSeconds?: number
  /**
   * Smallest `interval_seconds` a client may ask for.
   * @default 1
   */
  minIntervalSeconds?: number
  /**
   * Largest `interval_seconds` a client may ask for.
   * @default 3600
   */
  maxIntervalSeconds?: number
  /**
   * Upper bound on every adapter call; past it the call counts as failed (504).
   * @default 10000
   */
  adapterTimeoutMs?: number
  /**
   * Reconnection delay sent to EventSource clients as `retry:`, jittered by ±20% per client.
   * @default 3000
   */
  retryMs?: number
  /**
   * Samples kept per agent so that a reconnecting client (Last-Event-ID) gets what it missed.
   * @default 16
   */
  replayBufferSize?: number
  /**
   * A `: ping` comment frame this often, so proxies keep idle streams open and dead peers are noticed. 0 disables.
   * @default 15000
   */
  heartbeatIntervalMs?: number
  /**
   * Bytes a client may have queued before its metrics are conflated (it then gets the newest sample when it drains).
   * @default 65536
   */
  maxBufferedBytes?: number
  /**
   * A client's frames are held this long and leave as one write: with many agents on a connection (a fleet
   * stream) samples arrive one per macrotask, and without a window each is a syscall. Metrics arrive every
   * second or slower, so this is invisible to a dashboard. 0 writes at the end of the current tick.
   * @default 20
   */
  flushIntervalMs?: number
  /**
   * A client that has not drained for this long is disconnected (a normal disconnect).
   * @default 30000
   */
  stallTimeoutMs?: number
  /**
   * SSE clients on this instance; beyond it the stream route answers 503 with Retry-After. 0 = no limit.
   * @default 10000
   */
  maxClients?: number
  /**
   * SSE clients per agent; beyond it the stream route answers 503 with Retry-After. 0 = no limit.
   * @default 1000
   */
  maxClientsPerAgent?: number
  /**
   * Distinct agents one fleet connection (`GET /metrics/stream?agents=…`) may watch.
   * @default 100
   */
  maxAgentsPerStream?: number
  /**
   * Manual holds (`POST …/streaming/start`) at once; beyond it the start route answers 503 with Retry-After. 0 = no limit.
   * Each hold is a live adapter task that nobody may be watching.
   * @default 1000
   */
  maxHolds?: number
  /**
   * Called before any `/agents/:agentId/*` route (and a cancel, with the task's agent) does anything;
   * false answers 403. Runs after your own onRequest/preHandler hooks. Bounded by `adapterTimeoutMs`:
   * a throw or a hang answers 503 `FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED` (the thrown text is logged, never sent).
   */
  authorizeAgent?: (request: FastifyRequest, agentId: string) => boolean | Promise<boolean>
  /**
   * Where the reference counts live. The default is this process; `redisCoordinator()` from
   * `fastify-agent-sse/redis` makes every instance on one Redis share them (cluster mode).
   */
  coordinator?: Coordinator
}

type FunctionOptions = 'authorizeAgent' | 'coordinator'
export type ResolvedOptions = Required<Omit<AgentSseOptions, FunctionOptions>> & Pick<AgentSseOptions, FunctionOptions>

// Fastify's own register options reach the plugin's options object too.
const registerOptions = ['logLevel', 'logSerializers']
const knownOptions = ['adapter', 'authorizeAgent', 'coordinator', ...Object.keys(pluginOptionRules), ...registerOptions]

/** Validates and defaults the plugin options; throws FST_ERR_AGENT_SSE_INVALID_OPTION naming the first bad option. */
export function resolveOptions (options: Partial<AgentSseOptions> | undefined): ResolvedOptions {
  const given: Record<string, unknown> = options ?? {}
  assertKnownOptions(given, knownOptions, 'fastify-agent-sse')
  assertAdapter(given.adapter)
  assertOptionalFunction('authorizeAgent', given.authorizeAgent, 'a function (request, agentId) => boolean')
  assertCoordinator(given.coordinator)
  const result: ResolvedOptions = {
    adapter: given.adapter as AgentAdapter,
    authorizeAgent: given.authorizeAgent as ResolvedOptions['authorizeAgent'],
    coordinator: given.coordinator as Coordinator | undefined,
    ...resolveScalarOptions(given, pluginOptionRules)
  }
  if (result.maxIntervalSeconds < result.minIntervalSeconds) {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('maxIntervalSeconds', `must be >= minIntervalSeconds (${result.minIntervalSeconds}), got ${result.maxIntervalSeconds}`)
  }
  if (result.defaultIntervalSeconds < result.minIntervalSeconds || result.defaultIntervalSeconds > result.maxIntervalSeconds) {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('defaultIntervalSeconds', `must be within minIntervalSeconds..maxIntervalSeconds (${result.minIntervalSeconds}..${result.maxIntervalSeconds}), got ${result.defaultIntervalSeconds}`)
  }
  // A trailing slash would make every route start with "//".
  result.prefix = result.prefix.replace(/\/+$/, '')
  return result
}
