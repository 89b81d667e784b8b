import { inspect } from 'node:util'
import { Type, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { findAdapterProblem } from './adapter.js'
import { FST_ERR_AGENT_SSE_INVALID_OPTION } from './errors.js'

// The one place where options are checked: the plugin, a standalone StreamLifecycle and
// redisCoordinator() validate their options with these rules, so a bad value gets the same
// message (and the same minimum) whichever door it came through.

/** One scalar option: its schema (whose `description` completes "must be …") and its default. */
export interface OptionRule<T> {
  readonly schema: TSchema
  readonly defaultValue: T
}

const rule = <T>(schema: TSchema, defaultValue: T): OptionRule<T> => ({ schema, defaultValue })
const integer = (minimum: number, description: string, defaultValue: number): OptionRule<number> =>
  rule(Type.Integer({ minimum, description }), defaultValue)

/** The options a StreamLifecycle has, whether the plugin or the host creates it. */
export const lifecycleOptionRules = {
  stopDelayMs: integer(0, 'an integer >= 0', 2000),
  adapterTimeoutMs: integer(1, 'an integer >= 1', 10000),
  replayBufferSize: integer(1, 'an integer >= 1', 16),
  maxHolds: integer(0, 'an integer >= 0 (0 = no limit)', 1000)
}

/** The rest of the plugin's scalar options (HTTP and SSE transport). */
export const pluginOptionRules = {
  prefix: rule(Type.String({ pattern: '^(/.*)?$', description: 'a string that is empty or starts with "/"' }), ''),
  ...lifecycleOptionRules,
  defaultIntervalSeconds: integer(1, 'an integer >= 1', 5),
  minIntervalSeconds: integer(1, 'an integer >= 1', 1),
  maxIntervalSeconds: integer(1, 'an integer >= 1', 3600),
  retryMs: integer(0, 'an integer >= 0', 3000),
  heartbeatIntervalMs: integer(0, 'an integer >= 0 (0 disables heartbeats)', 15000),
  maxBufferedBytes: integer(1024, 'an integer >= 1024', 65536),
  stallTimeoutMs: integer(1, 'an integer >= 1', 30000),
  maxClients: integer(0, 'an integer >= 0 (0 = no limit)', 10000),
  maxClientsPerAgent: integer(0, 'an integer >= 0 (0 = no limit)', 1000),
  maxAgentsPerStream: integer(1, 'an integer >= 1', 100),
  flushIntervalMs: rule(Type.Integer({ minimum: 0, maximum: 1000, description: 'an integer from 0 (at the end of the tick) to 1000' }), 20)
}

/** The scalar options of redisCoordinator() (its `redis` client is checked on its own; no instanceId: a random UUID). */
export const coordinatorOptionRules = {
  keyPrefix: rule(Type.String({ description: 'a string' }), 'agent-sse:'),
  leaseMs: integer(100, 'an integer >= 100', 10000),
  instanceId: rule<string | undefined>(Type.String({ minLength: 1, description: 'a non-empty string' }), undefined)
}

type Resolved<Rules extends Record<string, OptionRule<unknown>>> = { [Name in keyof Rules]: Rules[Name]['defaultValue'] }

/**
 * Each rule's option from `given`, or its default when it is undefined; throws
 * FST_ERR_AGENT_SSE_INVALID_OPTION naming the first bad one (as `namePrefix` + its name).
 */
export function resolveScalarOptions<Rules extends Record<string, OptionRule<unknown>>> (
  given: Record<string, unknown>,
  rules: Rules,
  namePrefix = ''
): Resolved<Rules> {
  const resolved: Record<string, unknown> = {}
  for (const [name, { schema, defaultValue }] of Object.entries(rules)) {
    const value = given[name]
    if (value === undefined) resolved[name] = defaultValue
    else if (Value.Check(schema, value)) resolved[name] = value
    else throw new FST_ERR_AGENT_SSE_INVALID_OPTION(namePrefix + name, `must be ${schema.description}, got ${inspect(value)}`)
  }
  return resolved as Resolved<Rules>
}

/**
 * Throws FST_ERR_AGENT_SSE_INVALID_OPTION for the first key of `given` that is not a known option,
 * with the nearest known name: a misspelt option would otherwise be ignored silently (`stopDelay: 5`
 * running with the 2000 ms default).
 */
export function assertKnownOptions (given: Record<string, unknown>, known: readonly string[], owner: string, namePrefix = ''): void {
  for (const name of Object.keys(given)) {
    if (known.includes(name)) continue
    const nearest = nearestName(name, known)
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION(namePrefix + name, `is not an option of ${owner}${nearest === null ? '' : ` (did you mean "${namePrefix + nearest}"?)`}`)
  }
}

/** Throws FST_ERR_AGENT_SSE_INVALID_OPTION unless `adapter` implements AgentAdapter. */
export function assertAdapter (adapter: unknown): void {
  const problem = findAdapterProblem(adapter)
  if (problem === null) return
  const expected = problem === 'adapter' ? 'is required: an object implementing AgentAdapter' : 'must be a function (see the AgentAdapter interface)'
  throw new FST_ERR_AGENT_SSE_INVALID_OPTION(problem, expected)
}

/** Throws FST_ERR_AGENT_SSE_INVALID_OPTION unless `value` is undefined or a function. */
export function assertOptionalFunction (name: string, value: unknown, expected: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION(name, `must be ${expected}, got ${inspect(value)}`)
  }
}

/** Throws FST_ERR_AGENT_SSE_INVALID_OPTION unless `coordinator` is undefined or has `attach()`. */
export function assertCoordinator (coordinator: unknown): void {
  if (coordinator !== undefined && typeof (coordinator as { attach?: unknown } | null)?.attach !== 'function') {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('coordinator', `must be a coordinator such as redisCoordinator({ redis }) from fastify-agent-sse/redis, got ${inspect(coordinator)}`)
  }
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
