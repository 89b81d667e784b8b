import { inspect } from 'node:util'
import type { FastifyRequest } from 'fastify'
import { Type, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { findAdapterProblem, type AgentAdapter } from './adapter.js'
import { FST_ERR_AGENT_SSE_INVALID_OPTION } from './errors.js'
import type { Coordinator } from './lifecycle/coordinator.js'

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

const integer = (minimum: number, description: string): TSchema => Type.Integer({ minimum, description })

// One schema for every scalar option: `description` doubles as the error message.
const scalarOptions = {
  prefix: Type.String({ pattern: '^(/.*)?$', description: 'a string that is empty or starts with "/"' }),
  stopDelayMs: integer(0, 'an integer >= 0'),
  defaultIntervalSeconds: integer(1, 'an integer >= 1'),
  minIntervalSeconds: integer(1, 'an integer >= 1'),
  maxIntervalSeconds: integer(1, 'an integer >= 1'),
  adapterTimeoutMs: integer(1, 'an integer >= 1'),
  retryMs: integer(0, 'an integer >= 0'),
  replayBufferSize: integer(1, 'an integer >= 1'),
  heartbeatIntervalMs: integer(0, 'an integer >= 0 (0 disables heartbeats)'),
  maxBufferedBytes: integer(1024, 'an integer >= 1024'),
  stallTimeoutMs: integer(1, 'an integer >= 1'),
  maxClients: integer(0, 'an integer >= 0 (0 = no limit)'),
  maxClientsPerAgent: integer(0, 'an integer >= 0 (0 = no limit)'),
  maxHolds: integer(0, 'an integer >= 0 (0 = no limit)'),
  maxAgentsPerStream: integer(1, 'an integer >= 1'),
  flushIntervalMs: Type.Integer({ minimum: 0, maximum: 1000, description: 'an integer from 0 (at the end of the tick) to 1000' })
} satisfies Record<Exclude<keyof AgentSseOptions, 'adapter' | FunctionOptions>, TSchema>

const defaults: Omit<ResolvedOptions, 'adapter' | FunctionOptions> = {
  prefix: '',
  stopDelayMs: 2000,
  defaultIntervalSeconds: 5,
  minIntervalSeconds: 1,
  maxIntervalSeconds: 3600,
  adapterTimeoutMs: 10000,
  retryMs: 3000,
  replayBufferSize: 16,
  heartbeatIntervalMs: 15000,
  maxBufferedBytes: 65536,
  stallTimeoutMs: 30000,
  maxClients: 10000,
  maxClientsPerAgent: 1000,
  maxHolds: 1000,
  maxAgentsPerStream: 100,
  flushIntervalMs: 20
}

// Fastify's own register options reach the plugin's options object too.
const registerOptions = ['logLevel', 'logSerializers']
const knownOptions = ['adapter', 'authorizeAgent', 'coordinator', ...Object.keys(scalarOptions), ...registerOptions]

/** Validates and defaults the plugin options; throws FST_ERR_AGENT_SSE_INVALID_OPTION naming the first bad option. */
export function resolveOptions (options: Partial<AgentSseOptions> | undefined): ResolvedOptions {
  const given: Record<string, unknown> = options ?? {}
  // A misspelt option would otherwise be ignored silently (`stopDelay: 5` registering with the 2000 ms default).
  for (const name of Object.keys(given)) {
    if (!knownOptions.includes(name)) {
      const nearest = nearestName(name, knownOptions)
      throw new FST_ERR_AGENT_SSE_INVALID_OPTION(name, `is not an option of fastify-agent-sse${nearest === null ? '' : ` (did you mean "${nearest}"?)`}`)
    }
  }
  const adapterProblem = findAdapterProblem(given.adapter)
  if (adapterProblem !== null) {
    const expected = adapterProblem === 'adapter' ? 'is required: an object implementing AgentAdapter' : 'must be a function (see the AgentAdapter interface)'
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION(adapterProblem, expected)
  }
  if (given.authorizeAgent !== undefined && typeof given.authorizeAgent !== 'function') {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('authorizeAgent', `must be a function (request, agentId) => boolean, got ${inspect(given.authorizeAgent)}`)
  }
  if (given.coordinator !== undefined && typeof (given.coordinator as Coordinator | null)?.attach !== 'function') {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('coordinator', `must be a coordinator such as redisCoordinator({ redis }) from fastify-agent-sse/redis, got ${inspect(given.coordinator)}`)
  }
  const resolved: Record<string, unknown> = { adapter: given.adapter, authorizeAgent: given.authorizeAgent, coordinator: given.coordinator }
  for (const [name, schema] of Object.entries(scalarOptions)) {
    const value = given[name]
    if (value === undefined) {
      resolved[name] = defaults[name as keyof typeof defaults]
    } else if (Value.Check(schema, value)) {
      resolved[name] = value
    } else {
      throw new FST_ERR_AGENT_SSE_INVALID_OPTION(name, `must be ${schema.description}, got ${inspect(value)}`)
    }
  }
  const result = resolved as unknown as ResolvedOptions
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

/** The known name closest to `name` (case-insensitive edit distance, at most a third of its length), or null. */
function nearestName (name: string, known: readonly string[]): string | null {
  let best: string | null = null
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance || (candidate.toLowerCase().startsWith(name.toLowerCase()) && best === null)) {
      best = candidate
      bestDistance = Math.min(distance, bestDistance)
    }
  }
  return best
}

function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}
