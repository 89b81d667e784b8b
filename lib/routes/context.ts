import type { FastifyBaseLogger, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import {
  FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED,
  FST_ERR_AGENT_SSE_FORBIDDEN,
  FST_ERR_AGENT_SSE_INVALID_INTERVAL,
  FST_ERR_AGENT_SSE_UNKNOWN_AGENT
} from '../errors.js'
import { invokeAdapter, unrefTimers, withTimeout } from '../lifecycle/adapter-call.js'
import { markReported } from '../lifecycle/reported-errors.js'
import type { StreamLifecycle } from '../lifecycle/stream-lifecycle.js'
import type { ResolvedOptions } from '../options.js'

export interface RouteContext {
  lifecycle: StreamLifecycle
  options: ResolvedOptions
  /** The plugin's logger, at register's `logLevel`, for lines not tied to one request. */
  log: FastifyBaseLogger
}

/**
 * Host callbacks (`authorizeAgent`, `agentExists`) one request may have in flight at once: a page of
 * `GET /streams` or a fleet connection checks every agent it names.
 */
const CHECK_CONCURRENCY = 8

/** `check` for every item, at most CHECK_CONCURRENCY at a time; the answers in the items' order. */
export async function mapBounded<T, R> (items: readonly T[], check: (item: T) => Promise<R>): Promise<R[]> {
  const answers = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      answers[index] = await check(items[index]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(CHECK_CONCURRENCY, items.length) }, worker))
  return answers
}

/**
 * The host's `authorizeAgent` answer for one agent (true without one). Bounded by
 * `adapterTimeoutMs`; a throw or a hang answers 503 without the thrown text, which may
 * hold secrets (it is logged, not sent).
 */
export async function isAuthorized ({ options }: RouteContext, request: FastifyRequest, agentId: string): Promise<boolean> {
  const authorize = options.authorizeAgent
  if (!authorize) return true
  const timeoutMs = options.adapterTimeoutMs
  // Built only on a timeout: this runs on every connection when authorizeAgent is set.
  let timedOut: Error | null = null
  const onTimeout = (): Error => (timedOut = new FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED(agentId, `did not answer within ${timeoutMs} ms`))
  try {
    return (await withTimeout(invokeAdapter(() => authorize(request, agentId)), timeoutMs, unrefTimers, onTimeout)) === true
  } catch (err) {
    if (timedOut !== null && err === timedOut) {
      request.log.error({ agentId }, (err as Error).message)
      markReported(err)
      throw err
    }
    request.log.error({ agentId, err }, `authorizeAgent threw for agent ${agentId}`)
    const failed = new FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED(agentId, 'failed')
    markReported(failed)
    throw failed
  }
}

/** Throws 403 unless the host's `authorizeAgent` (if any) allows the request to touch the agent. */
export async function assertAuthorized (context: RouteContext, request: FastifyRequest, agentId: string): Promise<void> {
  if (!(await isAuthorized(context, request, agentId))) throw new FST_ERR_AGENT_SSE_FORBIDDEN(agentId)
}

/** The agents, in order, this request may see; at most CHECK_CONCURRENCY checks at a time. */
export async function filterAuthorized (context: RouteContext, request: FastifyRequest, agentIds: string[]): Promise<string[]> {
  if (!context.options.authorizeAgent) return agentIds
  const allowed = await mapBounded(agentIds, (agentId) => isAuthorized(context, request, agentId))
  return agentIds.filter((_agentId, index) => allowed[index])
}

/**
 * The interval a request asks for, or the default. The route schemas bound it already, but Ajv
 * coerces the strings "Infinity" and "1e400" to Infinity and then skips `maximum` for a
 * non-finite number: this is the check that holds.
 */
export function requestedInterval ({ options }: RouteContext, intervalSeconds: number | undefined): number {
  if (intervalSeconds === undefined) return options.defaultIntervalSeconds
  if (!Number.isSafeInteger(intervalSeconds) || intervalSeconds < options.minIntervalSeconds || intervalSeconds > options.maxIntervalSeconds) {
    throw new FST_ERR_AGENT_SSE_INVALID_INTERVAL(options.minIntervalSeconds, options.maxIntervalSeconds)
  }
  return intervalSeconds
}

/** `Retry-After` for a refusal that may succeed later: the clients' own reconnection delay. */
export function retryAfterSeconds ({ options }: RouteContext): string {
  return String(Math.max(1, Math.ceil(options.retryMs / 1000)))
}

/** A limit was reached: the refusal carries `Retry-After`, so well-behaved clients back off. */
export function refuseForNow (context: RouteContext, reply: FastifyReply, err: Error): never {
  reply.header('retry-after', retryAfterSeconds(context))
  throw err
}

/**
 * preHandler for every `/agents/:agentId/*` route, so nothing happens for a request
 * that may not see the agent (403) or names an agent the adapter does not know (404).
 */
export function agentGuard (context: RouteContext): preHandlerAsyncHookHandler | undefined {
  // With nothing to check, no hook at all: connection setup is the SSE route's hot path.
  if (!context.options.authorizeAgent && !context.lifecycle.checksAgents) return undefined
  return async function guardAgent (request: FastifyRequest): Promise<void> {
    const { agentId } = request.params as { agentId: string }
    await assertAuthorized(context, request, agentId)
    if (!(await context.lifecycle.agentExists(agentId))) throw new FST_ERR_AGENT_SSE_UNKNOWN_AGENT(agentId)
  }
}
