import { adapterCallTraced, channels, type AdapterOperation } from '../diagnostics.js'
import { FST_ERR_AGENT_SSE_ADAPTER_FAILED, FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT } from '../errors.js'
import type { LifecycleTimers } from './types.js'

// Unref'd so a lingering debounce or a pending adapter timeout never keeps the process alive.
export const unrefTimers: LifecycleTimers = {
  setTimeout (callback, ms) {
    const handle = setTimeout(callback, ms)
    handle.unref()
    return handle
  },
  clearTimeout (handle) {
    clearTimeout(handle as NodeJS.Timeout)
  }
}

/** Calls an adapter method so that a synchronous throw becomes a rejection instead of escaping into the caller. */
export function invokeAdapter<T> (call: () => Promise<T> | T): Promise<T> {
  try {
    return Promise.resolve(call())
  } catch (err) {
    return Promise.reject(err)
  }
}

/** Settles like `promise`, or rejects with `onTimeout()` if it has not settled within `timeoutMs`. */
export function withTimeout<T> (promise: Promise<T>, timeoutMs: number, timers: LifecycleTimers, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = timers.setTimeout(() => reject(onTimeout()), timeoutMs)
    promise.then(
      (value) => { timers.clearTimeout(timer); resolve(value) },
      (err: unknown) => { timers.clearTimeout(timer); reject(err) }
    )
  })
}

/**
 * Races an adapter promise against `timeoutMs` and maps the outcome to the
 * plugin's error codes (504 on timeout, 502 on failure). The raw promise is
 * left to the caller, which may need to clean up after a late success.
 */
export function boundAdapterCall<T> (
  raw: Promise<T>,
  operation: string,
  agentId: string,
  timeoutMs: number,
  timers: LifecycleTimers
): Promise<T> {
  const failed = raw.catch((err: unknown) => {
    throw adapterFailure(operation, agentId, err)
  })
  return withTimeout(failed, timeoutMs, timers, () => new FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT(operation, agentId, timeoutMs))
}

/**
 * One adapter call as the plugin makes it: a synchronous throw becomes a rejection, the outcome is
 * bounded by `timeoutMs` (504) and mapped to a 502 on failure, and the whole is traced on the
 * `fastify-agent-sse:adapter` TracingChannel when anyone listens.
 */
export function adapterCall<T> (
  operation: AdapterOperation,
  agentId: string,
  call: () => Promise<T> | T,
  timeoutMs: number,
  timers: LifecycleTimers
): Promise<T> {
  // No closure and no context object unless someone listens.
  if (!adapterCallTraced()) return boundAdapterCall(invokeAdapter(call), operation, agentId, timeoutMs, timers)
  return traceAdapterCall(operation, agentId, () => boundAdapterCall(invokeAdapter(call), operation, agentId, timeoutMs, timers))
}

/**
 * Runs `call`, an adapter call already bounded, inside the adapter TracingChannel (start and end
 * around the synchronous part, so a subscriber's store is active while the adapter runs; asyncStart
 * and asyncEnd when it settles; error before them on a failure or a timeout).
 */
export function traceAdapterCall<T> (operation: AdapterOperation, agentId: string, call: () => Promise<T>): Promise<T> {
  if (!adapterCallTraced()) return call()
  return channels.adapterCall.tracePromise(call, { operation, agentId })
}

/**
 * The plugin's 502 for a failed adapter call, whatever the adapter threw. The thrown value is kept
 * as `cause` (for logs) only if reading it cannot throw: a logger serialising a hostile cause
 * would otherwise fail where the failure is being reported.
 */
export function adapterFailure (operation: string, agentId: string, thrown: unknown): Error {
  return new FST_ERR_AGENT_SSE_ADAPTER_FAILED(operation, agentId, describeError(thrown), { cause: readable(thrown) ? thrown : describeError(thrown) })
}

function readable (value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true
  try {
    if (value instanceof Error) return typeof value.message === 'string' && typeof value.stack !== 'function'
    String(value)
    return true
  } catch {
    return false
  }
}

/**
 * A one-line description of any thrown value, without ever throwing: an adapter may reject
 * with a null-prototype object, a value whose `toString` throws, or an Error whose `message`
 * getter throws, and describing it must not turn into a second failure.
 */
export function describeError (err: unknown): string {
  try {
    if (err instanceof Error) {
      const message: unknown = err.message
      return typeof message === 'string' ? message : describeValue(message)
    }
    return describeValue(err)
  } catch {
    return 'an error that cannot be described'
  }
}

function describeValue (value: unknown): string {
  if (typeof value === 'string') return value
  try {
    return String(value)
  } catch {
    try {
      return Object.prototype.toString.call(value)
    } catch {
      return 'an error that cannot be described'
    }
  }
}

const adapterFailureCodes = new Set(['FST_ERR_AGENT_SSE_ADAPTER_FAILED', 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT', 'FST_ERR_AGENT_SSE_STREAM_ENDED'])

/** Whether `err` is the plugin's error for a failed adapter call or stream (502/504). */
export function isAdapterFailure (err: unknown): err is Error & { code: string, statusCode: number } {
  return typeof err === 'object' && err !== null && adapterFailureCodes.has((err as { code?: unknown }).code as string)
}

/**
 * The log fields of a failed adapter call, so that a line says the cause once: the plugin's
 * message already ends with the cause's text, and pino's error serializer appends every
 * `cause` again ("failed: boom: boom"). The line carries the adapter's own error (its message
 * and stack) when it threw one, else the plugin's (a timeout, an unreadable value), and the code.
 */
export function failureLogFields (err: unknown): { code?: string, err: unknown } {
  const code = (err as { code?: unknown } | null)?.code
  const cause = (err as { cause?: unknown } | null)?.cause
  return {
    ...(typeof code === 'string' ? { code } : {}),
    err: cause instanceof Error && isAdapterFailure(err) ? cause : err
  }
}
