import { findAdapterProblem, type AgentAdapter } from '../adapter.js'
import { FST_ERR_AGENT_SSE_CLOSED, FST_ERR_AGENT_SSE_INVALID_OPTION } from '../errors.js'
import { boundAdapterCall, invokeAdapter } from './adapter-call.js'
import { AgentStream, type AgentStreamContext } from './agent-stream.js'
import { ReplayHistory } from './replay-history.js'
import { Subscriber } from './subscriber.js'
import type {
  HoldOptions,
  LifecycleLogger,
  LifecycleTimers,
  StreamLifecycleOptions,
  StreamStatus,
  SubscribeOptions,
  Subscription
} from './types.js'

const silentLogger: LifecycleLogger = { info () {}, warn () {}, error () {} }

// Unref'd so a lingering debounce or a pending adapter timeout never keeps the process alive.
const unrefTimers: LifecycleTimers = {
  setTimeout (callback, ms) {
    const handle = setTimeout(callback, ms)
    handle.unref()
    return handle
  },
  clearTimeout (handle) {
    clearTimeout(handle as NodeJS.Timeout)
  }
}

/**
 * Per-agent reference counting of metrics subscribers over an {@link AgentAdapter}:
 * the first subscriber starts the agent's stream, the last one leaving stops it
 * after `stopDelayMs`. Pure TypeScript: no Fastify, no HTTP.
 */
export class StreamLifecycle {
  readonly stopDelayMs: number
  readonly adapterTimeoutMs: number
  readonly replayBufferSize: number
  private readonly adapter: AgentAdapter
  private readonly streams = new Map<string, AgentStream>()
  // Kept apart from `streams` (which forget idle agents) so that ids keep increasing
  // across stop/start and replay survives a restart of the agent's stream.
  private readonly histories = new Map<string, ReplayHistory>()
  private readonly context: AgentStreamContext
  private closing: Promise<void> | null = null
  private afterShutdown: () => void = () => {}

  constructor (options: StreamLifecycleOptions) {
    const adapterProblem = findAdapterProblem(options?.adapter)
    if (adapterProblem !== null) throw new FST_ERR_AGENT_SSE_INVALID_OPTION(adapterProblem, 'must be a function (see the AgentAdapter interface)')
    this.adapter = options.adapter
    this.stopDelayMs = nonNegativeInteger('stopDelayMs', options.stopDelayMs, 2000)
    this.adapterTimeoutMs = nonNegativeInteger('adapterTimeoutMs', options.adapterTimeoutMs, 10000, 1)
    this.replayBufferSize = nonNegativeInteger('replayBufferSize', options.replayBufferSize, 16, 1)
    this.context = {
      adapter: this.adapter,
      stopDelayMs: this.stopDelayMs,
      adapterTimeoutMs: this.adapterTimeoutMs,
      logger: options.logger ?? silentLogger,
      timers: options.timers ?? unrefTimers,
      now: options.now ?? Date.now,
      isClosing: () => this.closing !== null,
      onIdle: (stream) => {
        if (this.streams.get(stream.agentId) === stream) this.streams.delete(stream.agentId)
        // An agent that never produced a sample leaves nothing behind (ids that never existed cannot pile up).
        if (this.histories.get(stream.agentId)?.lastEventId === 0) this.histories.delete(stream.agentId)
      }
    }
  }

  /** Adds a subscriber; the first one for an agent starts its stream. Throws once the lifecycle is closed. */
  subscribe (agentId: string, options: SubscribeOptions): Subscription {
    if (this.closing) throw new FST_ERR_AGENT_SSE_CLOSED()
    assertInterval(options?.intervalSeconds)
    const subscriber = new Subscriber(options)
    const stream = this.streamOf(agentId)
    stream.subscribe(subscriber)
    let subscribed = true
    return {
      agentId,
      unsubscribe () {
        if (!subscribed) return
        subscribed = false
        stream.unsubscribe(subscriber)
      }
    }
  }

  /** Manual hold: keeps the agent streaming with no subscribers. Resolves once active; rejects (and drops the hold) if the start fails. */
  async hold (agentId: string, options: HoldOptions): Promise<StreamStatus> {
    if (this.closing) throw new FST_ERR_AGENT_SSE_CLOSED()
    assertInterval(options?.intervalSeconds)
    await this.streamOf(agentId).hold(options.intervalSeconds)
    return this.status(agentId)
  }

  /** Releases the manual hold; subscribers keep streaming. */
  async release (agentId: string): Promise<StreamStatus> {
    this.streams.get(agentId)?.release()
    return this.status(agentId)
  }

  /**
   * Force stop of a live task: releases the hold, ends subscribers with `cancelled`,
   * and resolves with the agent's status once the adapter stop settled; false for an unknown task.
   */
  async cancelTask (taskId: string): Promise<StreamStatus | false> {
    for (const stream of this.streams.values()) {
      if (stream.taskId !== taskId) continue
      const stopped = stream.cancel()
      if (stopped === null) return false
      await stopped
      return this.status(stream.agentId)
    }
    return false
  }

  /** The agent whose live or stopping task has this id, or null. */
  agentOfTask (taskId: string): string | null {
    for (const stream of this.streams.values()) if (stream.taskId === taskId) return stream.agentId
    return null
  }

  /** True if the task is this lifecycle's, or might be (a start for the agent is still in flight). */
  private mayOwn (agentId: string, taskId: string): boolean {
    const stream = this.streams.get(agentId)
    return stream !== undefined && (stream.state === 'starting' || stream.taskId === taskId)
  }

  /**
   * Stops every task the adapter reports (`listStreamingTasks`) that this lifecycle does not own:
   * agents left streaming by a previous process. Resolves with what it stopped; failures are logged.
   */
  async stopOrphans (): Promise<Array<{ agentId: string, taskId: string }>> {
    const adapter = this.adapter
    if (!adapter.listStreamingTasks) return []
    const { logger } = this.context
    let tasks: Array<{ agentId: string, taskId: string }>
    try {
      tasks = await this.callAdapter('listStreamingTasks', '*', () => adapter.listStreamingTasks!())
    } catch (err) {
      logger.error({ err }, `Could not list streaming tasks to stop orphans: ${(err as Error).message}`)
      return []
    }
    const reported = Array.isArray(tasks) ? tasks.filter((task) => typeof task?.agentId === 'string' && typeof task.taskId === 'string') : []
    const orphans = reported.filter((task) => !this.mayOwn(task.agentId, task.taskId))
    await Promise.all(orphans.map(async ({ agentId, taskId }) => {
      logger.warn({ agentId, taskId }, `Stopping orphaned metrics streaming task ${taskId} of agent ${agentId} (not started by this process)`)
      try {
        await this.callAdapter('stopMetricsStreaming', agentId, () => adapter.stopMetricsStreaming(agentId, taskId))
      } catch (err) {
        logger.error({ agentId, taskId, err }, `Failed to stop orphaned task ${taskId} of agent ${agentId}: ${(err as Error).message}`)
      }
    }))
    return orphans
  }

  status (agentId: string): StreamStatus {
    const stream = this.streams.get(agentId)
    if (stream) return stream.status()
    return {
      agent_id: agentId,
      streaming_active: false,
      state: 'idle',
      sse_clients: 0,
      manual_hold: false,
      task_id: null,
      interval_seconds: null,
      started_at: null,
      requested_intervals: []
    }
  }

  /** Statuses of every agent that is not idle. */
  list (): StreamStatus[] {
    const statuses: StreamStatus[] = []
    for (const stream of this.streams.values()) {
      if (stream.state !== 'idle') statuses.push(stream.status())
    }
    return statuses
  }

  /** The id of the last sample delivered for the agent (0 if none). */
  lastEventId (agentId: string): number {
    return this.histories.get(agentId)?.lastEventId ?? 0
  }

  /** The adapter's current metrics, bounded by `adapterTimeoutMs` (502/504 errors). */
  getCurrentMetrics (agentId: string): Promise<object> {
    return this.callAdapter('getCurrentMetrics', agentId, () => this.adapter.getCurrentMetrics(agentId))
  }

  /** Whether the adapter can tell unknown agents apart (it has `agentExists`). */
  get checksAgents (): boolean {
    return typeof this.adapter.agentExists === 'function'
  }

  /** True when the adapter has no `agentExists`, else its answer (bounded like every adapter call). */
  async agentExists (agentId: string): Promise<boolean> {
    const adapter = this.adapter
    if (!adapter.agentExists) return true
    return (await this.callAdapter('agentExists', agentId, () => adapter.agentExists!(agentId))) === true
  }

  /**
   * Ends every subscriber with `server-shutdown` and stops every agent stream
   * through the adapter. Each adapter call is bounded by `adapterTimeoutMs`, so
   * this resolves even if the adapter hangs. Idempotent.
   */
  close (): Promise<void> {
    if (this.closing) return this.closing
    // Set before any subscriber hears `server-shutdown`, so that one subscribing again from its callback is refused.
    this.closing = new Promise<void>((resolve) => { this.afterShutdown = resolve })
    Promise.all([...this.streams.values()].map((stream) => stream.shutdown())).then(() => this.afterShutdown())
    return this.closing
  }

  private streamOf (agentId: string): AgentStream {
    let stream = this.streams.get(agentId)
    if (!stream) {
      let history = this.histories.get(agentId)
      if (!history) {
        history = new ReplayHistory(this.replayBufferSize)
        this.histories.set(agentId, history)
      }
      stream = new AgentStream(agentId, this.context, history)
      this.streams.set(agentId, stream)
    }
    return stream
  }

  private callAdapter<T> (operation: string, agentId: string, call: () => Promise<T> | T): Promise<T> {
    return boundAdapterCall(invokeAdapter(call), operation, agentId, this.adapterTimeoutMs, this.context.timers)
  }
}

function nonNegativeInteger (name: string, value: number | undefined, fallback: number, minimum = 0): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < minimum) {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION(name, `must be an integer >= ${minimum} (got ${String(value)})`)
  }
  return value
}

function assertInterval (intervalSeconds: unknown): void {
  if (typeof intervalSeconds !== 'number' || !Number.isFinite(intervalSeconds) || intervalSeconds <= 0) {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('intervalSeconds', `must be a positive number of seconds (got ${String(intervalSeconds)})`)
  }
}
