import type { AgentAdapter } from '../adapter.js'
import { errorBody, type AgentSseErrorBody } from '../errors.js'
import { adapterCall, failureLogFields, withTimeout } from '../lifecycle/adapter-call.js'
import type { AgentStreamContext } from '../lifecycle/agent-stream.js'
import type { CoordinatorContext } from '../lifecycle/coordinator.js'
import { TaskIndex } from '../lifecycle/task-index.js'
import { encodeMessage, samplePayload } from './messages.js'
import { OwnedStream, type ClusterDemand } from './owned-stream.js'
import { encodeInfo, type StreamInfo } from './records.js'
import type { RedisStore } from './store.js'

/** What the owner side needs from the rest of the instance. */
export interface OwnershipHooks {
  /** The cluster's demand for the agent as this instance knows it. */
  demand (agentId: string): ClusterDemand
  /** Reads the agent again (its demand may have changed since the read that took the lease). */
  refresh (agentId: string): Promise<void>
  /** The lowest event id the agent's next sample may get (ids any instance has seen). */
  eventIdFloor (agentId: string): number
  available (): boolean
  closing (): boolean
  /** Gives up every lease if the renewal deadline passed (a pause may run queued events before the timer). */
  checkDeadline (): void
  /** A lease was taken (its deadline may be the only one). */
  leaseTaken (): void
  /** The owned stream changed (state, or it went away). */
  changed (agentId: string): void
  /** The stream ended, or failed, for the cluster: applied here once Redis took the word. */
  ended (agentId: string, reason: string): void
  failed (agentId: string, body: AgentSseErrorBody): void
}

/**
 * The agents this instance owns (holds the lease of) and runs a stream for: taking an agent over (and stopping the
 * previous owner's task, once), describing the stream and publishing its samples, ends and failures, all fenced by
 * the lease inside Redis, and giving the agent up.
 */
export class Ownership {
  private readonly owned = new Map<string, OwnedStream>()
  /** The last task each owned stream described (the end of a stream names it). */
  private readonly tasks = new Map<string, string>()
  /** Owned streams by their live or stopping task. */
  private readonly taskIndex = new TaskIndex()
  private readonly streamContext: AgentStreamContext

  constructor (
    private readonly context: CoordinatorContext,
    private readonly store: RedisStore,
    private readonly instanceId: string,
    private readonly hooks: OwnershipHooks
  ) {
    this.streamContext = {
      ...context,
      adapter: this.fencedAdapter(),
      // Each owned stream numbers its samples itself (see OwnedStream); these are never used.
      nextEventId: () => 0,
      lastEventId: () => 0,
      isClosing: () => hooks.closing(),
      onIdle: (stream) => this.idle(stream.agentId),
      onStateChanged: (stream) => {
        this.taskIndex.update(stream)
        this.stateChanged(stream.agentId)
      }
    }
  }

  get size (): number {
    return this.owned.size
  }

  /** Owned agents, also those being given up. */
  agents (): string[] {
    return [...this.owned.keys()]
  }

  has (agentId: string): boolean {
    return this.owned.has(agentId)
  }

  get (agentId: string): OwnedStream | undefined {
    return this.owned.get(agentId)
  }

  /** The stream this instance owns for the agent, unless it is giving it up (then a peer's word counts). */
  live (agentId: string): OwnedStream | undefined {
    const own = this.owned.get(agentId)
    return own?.abandoned ? undefined : own
  }

  * allLive (): IterableIterator<OwnedStream> {
    for (const own of this.owned.values()) if (!own.abandoned) yield own
  }

  /** The agents whose owned stream (not being given up) runs this task (task ids are only unique per agent). */
  agentsOfTask (taskId: string): string[] {
    return this.taskIndex.streamsOf(taskId).filter((stream) => this.live(stream.agentId)?.stream === stream).map((stream) => stream.agentId)
  }

  /** The owner's description of its stream, or null if it does not own the agent. */
  info (agentId: string): StreamInfo | null {
    return this.live(agentId)?.info(this.instanceId) ?? null
  }

  /** Moves the agent's stream toward the cluster's demand. */
  follow (agentId: string): void {
    const own = this.live(agentId)
    if (own && this.hooks.available()) own.follow(this.hooks.demand(agentId))
  }

  /** A script sent at `sentAt` took the agent's free lease for this instance. */
  async acquired (agentId: string, sentAt: number): Promise<void> {
    if (this.owned.has(agentId)) return
    if (this.hooks.closing() || !this.hooks.available()) {
      this.store.release(agentId, this.idleInfo()).catch(() => {})
      return
    }
    const { logger } = this.context
    const own = new OwnedStream(agentId, this.streamContext, {
      sample: (json, intervalSeconds) => this.publishSample(agentId, json, intervalSeconds),
      end: (reason) => this.publishEnd(agentId, reason),
      fail: (err) => this.publishFailure(agentId, err)
    }, sentAt)
    this.owned.set(agentId, own)
    this.hooks.leaseTaken()
    logger.info({ agentId, instanceId: this.instanceId }, `Instance ${this.instanceId} now owns the metrics stream of agent ${agentId}`)
    const previous = await this.store.takePreviousTask(agentId).catch(() => null)
    // Whoever recorded it (a previous process may have had this instance's id), no live stream of
    // this instance runs that task: this stream is new.
    if (previous) {
      logger.warn({ agentId, previousOwner: previous.owner, taskId: previous.taskId }, `Took over agent ${agentId} from instance ${previous.owner}; samples pause until the new task starts. Stopping its task ${previous.taskId} (best effort)`)
      this.stopPreviousTask(agentId, previous.taskId)
    }
    if (this.owned.get(agentId) !== own) return
    // The demand as it is now (the read that took the lease may be older than a peer's change).
    await this.hooks.refresh(agentId)
    if (this.owned.get(agentId) !== own) return
    own.follow(this.hooks.demand(agentId))
    // The demand left while the lease was being taken: a stream that never starts never goes idle,
    // so give the lease back here, or it would be renewed (and the agent shown as starting) for ever.
    if (own.stream.state === 'idle') this.idle(agentId)
  }

  /** Describes the stream again (Redis lost the description, or the lease had to be taken again). */
  describe (agentId: string): void {
    this.stateChanged(agentId)
  }

  leaseLost (agentId: string, why: string): void {
    const own = this.owned.get(agentId)
    if (!own || own.abandoned) return
    this.context.logger.warn({ agentId, instanceId: this.instanceId, taskId: own.stream.taskId }, `Instance ${this.instanceId} lost the lease of agent ${agentId} (${why}), stopping its metrics stream`)
    own.abandon()
  }

  /** A renewal sent at `sentAt` renewed the agent's lease. */
  renewed (agentId: string, sentAt: number): void {
    const own = this.live(agentId)
    if (own) own.leaseSetAt = Math.max(own.leaseSetAt, sentAt)
  }

  /** When the call that set the oldest live lease was sent, or null with none. */
  oldestLease (): number | null {
    let oldest: number | null = null
    for (const own of this.allLive()) if (oldest === null || own.leaseSetAt < oldest) oldest = own.leaseSetAt
    return oldest
  }

  /** Gives up every lease last set by a call sent at or before `sentBy`: they may have run out. */
  abandonExpired (sentBy: number, why: string): void {
    for (const own of [...this.allLive()]) if (own.leaseSetAt <= sentBy) this.leaseLost(own.agentId, why)
  }

  /** Closing: stops every owned stream without a word to the cluster, then gives the leases up. */
  async close (): Promise<void> {
    const owned = [...this.owned.values()]
    await Promise.all(owned.map((own) => own.abandon()))
  }

  releaseAll (): Array<Promise<void>> {
    const idle = this.idleInfo()
    return [...this.owned.keys()].map((agentId) => this.store.release(agentId, idle))
  }

  /**
   * The adapter as owned streams see it: a stop first checks in Redis that no successor took the task over
   * (a successor stops its predecessor's task; an owner thawed after losing its lease must not stop it again).
   * Without an answer from Redis the owner stops its task itself: a task nobody stops is the worse outcome.
   */
  private fencedAdapter (): AgentAdapter {
    const { adapter, logger, timers, adapterTimeoutMs } = this.context
    // The check must leave the stop itself time within the lifecycle's adapterTimeoutMs, and not keep a task that
    // lost its lease running much past leaseMs: a client of a Redis that is down may queue the command instead of
    // failing it (an ioredis Cluster does). A Redis that answers does so in milliseconds.
    const checkMs = Math.max(1, Math.min(Math.floor(adapterTimeoutMs / 2), 250))
    const stop = async (agentId: string, taskId: string): Promise<void> => {
      let mine = true
      try {
        mine = await withTimeout(this.store.claimStop(agentId, taskId), checkMs, timers, () => new Error(`Redis did not answer within ${checkMs} ms`))
      } catch (err) {
        logger.warn({ agentId, taskId, err }, `Could not check in Redis whether task ${taskId} of agent ${agentId} was taken over; stopping it`)
      }
      if (!mine) {
        logger.info({ agentId, taskId, instanceId: this.instanceId }, `Task ${taskId} of agent ${agentId} was taken over (and stopped) by the agent's next owner; not stopping it again`)
        return
      }
      await adapter.stopMetricsStreaming(agentId, taskId)
    }
    return new Proxy(adapter, {
      get (target, property) {
        if (property === 'stopMetricsStreaming') return stop
        const value: unknown = Reflect.get(target, property, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  }

  private stopPreviousTask (agentId: string, taskId: string): void {
    const { adapter, adapterTimeoutMs, timers, logger } = this.context
    adapterCall('stopMetricsStreaming', agentId, () => adapter.stopMetricsStreaming(agentId, taskId), adapterTimeoutMs, timers).then(
      () => logger.info({ agentId, taskId }, `Stopped the previous owner's task ${taskId} of agent ${agentId}`),
      (err: unknown) => logger.error({ agentId, taskId, ...failureLogFields(err) }, `Failed to stop the previous owner's task ${taskId} of agent ${agentId}`)
    )
  }

  private stateChanged (agentId: string): void {
    const own = this.owned.get(agentId)
    if (!own) return
    this.hooks.checkDeadline()
    if (own.stream.taskId !== null) this.tasks.set(agentId, own.stream.taskId)
    if (!own.abandoned && own.stream.state !== 'idle' && this.hooks.available()) {
      const info = own.info(this.instanceId)
      const task = info.s === 'active' ? info.t : null
      this.store.publishInfo(agentId, encodeInfo(info), task).then(
        (published) => { if (!published) this.leaseLost(agentId, 'another instance holds its lease') },
        () => {}
      )
    }
    this.hooks.changed(agentId)
  }

  private idle (agentId: string): void {
    const own = this.owned.get(agentId)
    if (!own || own.stream.state !== 'idle') return
    this.owned.delete(agentId)
    this.tasks.delete(agentId)
    this.context.logger.info({ agentId, instanceId: this.instanceId }, `Instance ${this.instanceId} released agent ${agentId}`)
    this.store.release(agentId, this.idleInfo()).catch(() => {})
    this.hooks.changed(agentId)
  }

  private idleInfo (): string {
    return encodeInfo({ o: this.instanceId, s: 'idle', t: null, v: null, a: null })
  }

  private publishSample (agentId: string, json: string, intervalSeconds: number): void {
    if (!this.hooks.available()) return
    // Never below an id any instance has handed out, even if Redis lost the counter and this owner is new.
    this.store.publishSample(agentId, this.hooks.eventIdFloor(agentId), samplePayload(intervalSeconds, json)).then(
      (eventId) => { if (eventId === 0) this.leaseLost(agentId, 'another instance holds its lease') },
      (err: Error) => this.context.logger.warn({ agentId, err }, `Could not publish a sample of agent ${agentId}: ${err.message}`)
    )
  }

  // The end is applied here once Redis took it (this instance's clients must not restart the stream
  // before the echo arrives), and not at all if the lease is gone: then the stream is another owner's.
  private publishEnd (agentId: string, reason: string): void {
    const taskId = this.tasks.get(agentId) ?? null
    this.publishAsOwner(agentId, encodeMessage({ kind: 'end', taskId, reason }), () => this.hooks.ended(agentId, reason))
  }

  private publishFailure (agentId: string, err: Error): void {
    const body = errorBody(err)
    const taskId = this.tasks.get(agentId) ?? null
    this.publishAsOwner(agentId, encodeMessage({ kind: 'fail', taskId, error: body }), () => this.hooks.failed(agentId, body))
  }

  private publishAsOwner (agentId: string, message: string, applyHere: () => void): void {
    if (!this.hooks.available()) return
    this.store.publishAsOwner(agentId, message).then(
      (published) => {
        if (published) applyHere()
        else this.leaseLost(agentId, 'another instance holds its lease')
      },
      (err: Error) => this.context.logger.warn({ agentId, err }, `Could not tell the cluster about agent ${agentId}: ${err.message}`)
    )
  }
}
