import type { AgentAdapter } from '../adapter.js'
import { FST_ERR_AGENT_SSE_ADAPTER_FAILED, FST_ERR_AGENT_SSE_CLOSED, FST_ERR_AGENT_SSE_INVALID_OPTION, FST_ERR_AGENT_SSE_TOO_MANY_HOLDS } from '../errors.js'
import { assertAdapter, assertCoordinator, assertKnownOptions, lifecycleOptionRules, resolveScalarOptions } from '../option-rules.js'
import type { AdapterOperation } from '../diagnostics.js'
import { adapterCall, failureLogFields, unrefTimers } from './adapter-call.js'
import type { CoordinatedStreams, Coordinator } from './coordinator.js'
import { localCoordinator } from './local-streams.js'
import { serialiseSample } from './sample.js'
import { Subscriber } from './subscriber.js'
import type {
  HoldOptions,
  LifecycleLogger,
  LifecycleTimers,
  StreamStatus,
  SubscribeOptions,
  Subscription
} from './types.js'

/** Options of {@link StreamLifecycle}. */
export interface StreamLifecycleOptions {
  adapter: AgentAdapter
  /** Debounce window after the last subscriber leaves. @default 2000 */
  stopDelayMs?: number
  /** Upper bound on every adapter call. @default 10000 */
  adapterTimeoutMs?: number
  /** Samples kept per agent for Last-Event-ID replay. @default 16 */
  replayBufferSize?: number
  /** Manual holds at once; past it `hold()` throws FST_ERR_AGENT_SSE_TOO_MANY_HOLDS (503). 0 = no limit. @default 1000 */
  maxHolds?: number
  logger?: LifecycleLogger
  timers?: LifecycleTimers
  /** Wall clock for `startedAt`. @default Date.now */
  now?: () => number
  /**
   * Where the reference counts live. The default is this process; `redisCoordinator()`
   * from `fastify-agent-sse/redis` shares them across instances.
   */
  coordinator?: Coordinator
}

const knownLifecycleOptions = ['adapter', 'coordinator', 'logger', 'timers', 'now', ...Object.keys(lifecycleOptionRules)]

const silentLogger: LifecycleLogger = { info () {}, warn () {}, error () {} }

/**
 * Per-agent reference counting of metrics subscribers over an {@link AgentAdapter}:
 * the first subscriber starts the agent's stream, the last one leaving stops it
 * after `stopDelayMs`. Pure TypeScript: no Fastify, no HTTP. Where the counts
 * live is the {@link Coordinator}'s: this process by default, a cluster with
 * `fastify-agent-sse/redis`.
 */
export class StreamLifecycle {
  readonly stopDelayMs: number
  readonly adapterTimeoutMs: number
  readonly replayBufferSize: number
  readonly maxHolds: number
  /**
   * A `coordinator` was given (without one the counts live in this process): the routes then
   * refuse requests (503) while it reports itself unavailable.
   */
  readonly coordinated: boolean
  private readonly adapter: AgentAdapter
  private readonly streams: CoordinatedStreams
  private readonly logger: LifecycleLogger
  private readonly timers: LifecycleTimers
  private closing: Promise<void> | null = null

  constructor (options: StreamLifecycleOptions) {
    const given = (options ?? {}) as unknown as Record<string, unknown>
    assertKnownOptions(given, knownLifecycleOptions, 'StreamLifecycle')
    assertAdapter(given.adapter)
    assertCoordinator(given.coordinator)
    const { stopDelayMs, adapterTimeoutMs, replayBufferSize, maxHolds } = resolveScalarOptions(given, lifecycleOptionRules)
    this.adapter = options.adapter
    this.stopDelayMs = stopDelayMs
    this.adapterTimeoutMs = adapterTimeoutMs
    this.replayBufferSize = replayBufferSize
    this.maxHolds = maxHolds
    this.coordinated = options.coordinator !== undefined
    const coordinator = options.coordinator ?? localCoordinator()
    this.logger = options.logger ?? silentLogger
    this.timers = options.timers ?? unrefTimers
    this.streams = coordinator.attach({
      adapter: this.adapter,
      stopDelayMs: this.stopDelayMs,
      adapterTimeoutMs: this.adapterTimeoutMs,
      replayBufferSize: this.replayBufferSize,
      logger: this.logger,
      timers: this.timers,
      now: options.now ?? Date.now
    })
  }

  /** Resolves once the coordinator can serve (at once in a single process). */
  ready (): Promise<void> {
    return this.streams.ready()
  }

  /** Throws `FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE` (503) while the coordinator cannot serve. */
  assertAvailable (): void {
    this.streams.assertAvailable()
  }

  /** Adds a subscriber; the first one for an agent starts its stream. Throws once the lifecycle is closed. */
  subscribe (agentId: string, options: SubscribeOptions): Subscription {
    if (this.closing) throw new FST_ERR_AGENT_SSE_CLOSED()
    assertInterval(options?.intervalSeconds)
    this.streams.assertAvailable()
    const unsubscribe = this.streams.subscribe(agentId, new Subscriber(options))
    let subscribed = true
    return {
      agentId,
      unsubscribe () {
        if (!subscribed) return
        subscribed = false
        unsubscribe()
      }
    }
  }

  /** Manual hold: keeps the agent streaming with no subscribers. Resolves once active; rejects (and drops the hold) if the start fails. */
  async hold (agentId: string, options: HoldOptions): Promise<StreamStatus> {
    if (this.closing) throw new FST_ERR_AGENT_SSE_CLOSED()
    assertInterval(options?.intervalSeconds)
    this.streams.assertAvailable()
    // Each hold is a live adapter task with nobody watching: bounded, as clients are.
    if (this.maxHolds > 0 && this.streams.holdCount() >= this.maxHolds && !this.streams.status(agentId).manualHold) {
      throw new FST_ERR_AGENT_SSE_TOO_MANY_HOLDS(this.maxHolds)
    }
    return this.streams.hold(agentId, options.intervalSeconds)
  }

  /** Releases the manual hold; subscribers keep streaming. */
  async release (agentId: string): Promise<StreamStatus> {
    this.streams.assertAvailable()
    return this.streams.release(agentId)
  }

  /**
   * Force stop of a live task: releases the hold, ends subscribers with `cancelled`, and
   * resolves with the agent's status once the adapter stop settled; false for an unknown task.
   * Task ids are only unique per agent: with `agentId` only that agent's task is cancelled
   * (the caller checked it may touch that agent); without it, the first agent running the task.
   */
  async cancelTask (taskId: string, agentId?: string): Promise<StreamStatus | false> {
    this.streams.assertAvailable()
    const target = agentId ?? this.streams.agentsOfTask(taskId)[0]
    if (target === undefined) return false
    return this.streams.cancelTask(target, taskId)
  }

  /** The agents whose live or stopping task has this id (task ids are only unique per agent). */
  agentsOfTask (taskId: string): string[] {
    return this.streams.agentsOfTask(taskId)
  }

  /**
   * Stops every task the adapter reports (`listStreamingTasks`) that this lifecycle does not own:
   * agents left streaming by a previous process. Resolves with what it stopped; failures are logged.
   */
  async stopOrphans (): Promise<Array<{ agentId: string, taskId: string }>> {
    const adapter = this.adapter
    if (!adapter.listStreamingTasks) return []
    const logger = this.logger
    let tasks: Array<{ agentId: string, taskId: string }>
    try {
      tasks = await this.callAdapter('listStreamingTasks', '*', () => adapter.listStreamingTasks!())
    } catch (err) {
      logger.error(failureLogFields(err), 'Could not list streaming tasks to stop orphans')
      return []
    }
    const reported = Array.isArray(tasks) ? tasks.filter((task) => typeof task?.agentId === 'string' && typeof task.taskId === 'string') : []
    const orphans = reported.filter((task) => !this.streams.mayOwn(task.agentId, task.taskId))
    await Promise.all(orphans.map(async ({ agentId, taskId }) => {
      logger.warn({ agentId, taskId }, `Stopping orphaned metrics streaming task ${taskId} of agent ${agentId} (not started by this process)`)
      try {
        await this.callAdapter('stopMetricsStreaming', agentId, () => adapter.stopMetricsStreaming(agentId, taskId))
      } catch (err) {
        logger.error({ agentId, taskId, ...failureLogFields(err) }, `Failed to stop orphaned task ${taskId} of agent ${agentId}`)
      }
    }))
    return orphans
  }

  /** The agent's status as this instance knows it now (see {@link currentStatus} for one read from the coordinator). */
  status (agentId: string): StreamStatus {
    return this.streams.status(agentId)
  }

  /**
   * The agent's status once the coordinator's view of it is current: at once in a single process; in a
   * cluster, after a read of an agent this instance does not follow (no clients, hold or stream here).
   */
  async currentStatus (agentId: string): Promise<StreamStatus> {
    await this.streams.refresh?.([agentId])
    return this.streams.status(agentId)
  }

  /** {@link page}, with the page's agents current as in {@link currentStatus}. */
  async currentPage (after: string | null, limit: number): Promise<{ streams: StreamStatus[], next: string | null }> {
    await this.streams.refresh?.(null)
    const { agentIds, next } = this.pageOf(after, limit)
    await this.streams.refresh?.(agentIds)
    return { streams: this.statuses(agentIds), next }
  }

  /** Statuses of every agent that is not idle. */
  list (): StreamStatus[] {
    return this.page(null, Infinity).streams
  }

  /**
   * Statuses of the agents that are not idle, by agent id: at most `limit` after the agent id
   * `after` (null: from the start), and the cursor of the next page (null on the last one).
   */
  page (after: string | null, limit: number): { streams: StreamStatus[], next: string | null } {
    const { agentIds, next } = this.pageOf(after, limit)
    return { streams: this.statuses(agentIds), next }
  }

  /** The agent ids of a page (see {@link page}) and the next page's cursor. */
  private pageOf (after: string | null, limit: number): { agentIds: string[], next: string | null } {
    const agents = this.streams.streamingAgents()
    // The `limit` smallest ids after the cursor (plus one, to know whether a next page exists), without
    // sorting every agent: a page of a 20,000-agent fleet costs one pass, not a sort of all of them.
    if (limit >= agents.length) return { agentIds: agents.filter((agentId) => after === null || agentId > after).sort(), next: null }
    const page: string[] = []
    const keep = limit + 1
    for (const agentId of agents) {
      if (after !== null && agentId <= after) continue
      if (page.length === keep && agentId >= page[keep - 1]!) continue
      let low = 0
      let high = page.length
      while (low < high) {
        const middle = (low + high) >>> 1
        if (page[middle]! < agentId) low = middle + 1
        else high = middle
      }
      page.splice(low, 0, agentId)
      if (page.length > keep) page.pop()
    }
    const more = page.length > limit
    if (more) page.length = limit
    return { agentIds: page, next: more ? page.at(-1)! : null }
  }

  /** The statuses of those agents that are still not idle. */
  private statuses (agentIds: string[]): StreamStatus[] {
    const streams: StreamStatus[] = []
    for (const agentId of agentIds) {
      const status = this.streams.status(agentId)
      if (status.streamingActive) streams.push(status)
    }
    return streams
  }

  /** The id of the last sample delivered for the agent (0 if none). */
  lastEventId (agentId: string): number {
    return this.streams.lastEventId(agentId)
  }

  /** The adapter's current metrics, bounded by `adapterTimeoutMs` (502/504 errors; 502 for anything but a JSON object). */
  async getCurrentMetrics (agentId: string): Promise<object> {
    const metrics: unknown = await this.callAdapter('getCurrentMetrics', agentId, () => this.adapter.getCurrentMetrics(agentId))
    const { problem } = serialiseSample(metrics)
    if (problem !== null) throw new FST_ERR_AGENT_SSE_ADAPTER_FAILED('getCurrentMetrics', agentId, `its answer is ${problem}`)
    return metrics as object
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
    let done: () => void = () => {}
    this.closing = new Promise<void>((resolve) => { done = resolve })
    this.streams.close().then(() => done())
    return this.closing
  }

  private callAdapter<T> (operation: AdapterOperation, agentId: string, call: () => Promise<T> | T): Promise<T> {
    return adapterCall(operation, agentId, call, this.adapterTimeoutMs, this.timers)
  }
}

function assertInterval (intervalSeconds: unknown): void {
  if (typeof intervalSeconds !== 'number' || !Number.isFinite(intervalSeconds) || intervalSeconds <= 0) {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('intervalSeconds', `must be a positive number of seconds (got ${String(intervalSeconds)})`)
  }
}
