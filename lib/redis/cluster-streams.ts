import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import {
  errorBody,
  FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT,
  FST_ERR_AGENT_SSE_CLOSED,
  FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE,
  FST_ERR_AGENT_SSE_HOLD_ENDED,
  FST_ERR_AGENT_SSE_STREAM_ENDED,
  type AgentSseErrorBody
} from '../errors.js'
import type { AgentAdapter } from '../adapter.js'
import { adapterCall, failureLogFields, withTimeout } from '../lifecycle/adapter-call.js'
import type { AgentStreamContext } from '../lifecycle/agent-stream.js'
import type { CoordinatedStreams, CoordinatorContext } from '../lifecycle/coordinator.js'
import type { Subscriber } from '../lifecycle/subscriber.js'
import { idleStatus, type LifecycleTimers, type StreamStatus } from '../lifecycle/types.js'
import { ClusterView } from './cluster-view.js'
import { LocalClients } from './local-clients.js'
import { decodeInbox, decodeMessage, encodeMessage, samplePayload, type ClusterMessage, type InboxMessage } from './messages.js'
import { OwnedStream, type ClusterDemand } from './owned-stream.js'
import { TimedWaits } from './timed-waits.js'
import { RedisStore, type InstanceSnapshot, type OwnedStreamInfo } from './store.js'

export interface ClusterSettings {
  redis: Redis
  keyPrefix: string
  leaseMs: number
  instanceId: string
}

/**
 * One instance of a cluster that shares reference counts through Redis.
 *
 * Every instance publishes its own demand (SSE clients per agent and interval, manual holds)
 * under an instance lease, renewed every leaseMs/3, and reads everyone else's. The instance
 * holding an agent's lease (its owner) runs the single-process state machine for it, with
 * the cluster's demand, and publishes each sample once; every instance fans it out to its
 * own clients. See README "Running more than one instance".
 */
export class ClusterStreams implements CoordinatedStreams {
  private readonly store: RedisStore
  private readonly view: ClusterView
  private readonly renewMs: number
  private readonly locals: LocalClients
  /** Manual holds set through this instance. */
  private readonly holds = new Map<string, number>()
  private readonly owned = new Map<string, OwnedStream>()
  /** `hold()` callers waiting for the stream to be active, by agent. */
  private readonly holdWaiters: TimedWaits
  /** Cancels sent to an owner, by request id, waiting for its answer. */
  private readonly pendingCancels: TimedWaits<boolean>
  private readonly streamContext: AgentStreamContext
  private subscriberConnection: Redis | null = null
  private available = false
  private unavailableReason = 'not connected yet'
  private closing: Promise<void> | null = null
  /** When the last successful sync was sent: every lease this instance holds is valid until leaseMs after it. */
  private renewedAt = 0
  private tickTimer: unknown = null
  private deadlineTimer: unknown = null
  private syncing: Promise<void> | null = null
  /** Syncs started so far, so that a caller can wait for one that started after it asked. */
  private syncsStarted = 0
  private syncScheduled = false
  private lastSnapshot = ''
  private readonly detach: Array<() => void> = []
  private readonly fencedAdapter: AgentAdapter

  constructor (private readonly context: CoordinatorContext, private readonly settings: ClusterSettings) {
    this.store = new RedisStore(settings.redis, settings.keyPrefix, settings.instanceId, settings.leaseMs)
    this.view = new ClusterView(settings.instanceId)
    this.renewMs = Math.max(1, Math.floor(settings.leaseMs / 3))
    this.locals = new LocalClients(context.replayBufferSize, context.logger, context.timers, () => context.now())
    this.holdWaiters = new TimedWaits(context.timers)
    this.pendingCancels = new TimedWaits<boolean>(context.timers)
    this.fencedAdapter = this.createFencedAdapter()
    this.streamContext = {
      ...context,
      // Each owned stream numbers its samples itself (see OwnedStream); these are never used.
      nextEventId: () => 0,
      lastEventId: () => 0,
      isClosing: () => this.closing !== null,
      onIdle: (stream) => this.ownedIdle(stream.agentId),
      onStateChange: (stream) => this.ownedChanged(stream.agentId)
    }
  }

  get instanceId (): string {
    return this.settings.instanceId
  }

  async ready (): Promise<void> {
    const { redis } = this.settings
    if (redis.status === 'wait') await redis.connect()
    await untilReady(redis)
    const subscriber = redis.duplicate()
    this.subscriberConnection = subscriber
    if (subscriber.status === 'wait') await subscriber.connect()
    // Without a listener ioredis reports every failed reconnect as an unhandled error.
    subscriber.on('error', () => {})
    subscriber.on('message', (channel: string, text: string) => this.onMessage(channel, text))
    await untilReady(subscriber)
    await subscriber.subscribe(this.store.broadcastChannel, this.store.inboxChannel(this.instanceId))
    for (const connection of [redis, subscriber]) {
      const down = (): void => this.connectionDown(connection === redis ? 'the Redis connection closed' : 'the Redis subscriber connection closed')
      const up = (): void => this.scheduleSync()
      connection.on('close', down)
      connection.on('ready', up)
      this.detach.push(() => { connection.off('close', down); connection.off('ready', up) })
    }
    await this.store.loadScripts()
    await this.syncOnce()
    if (!this.available) throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(this.unavailableReason)
    this.context.logger.info({ instanceId: this.instanceId, leaseMs: this.settings.leaseMs }, `Cluster instance ${this.instanceId} joined (lease ${this.settings.leaseMs} ms)`)
    this.scheduleTick()
  }

  assertAvailable (): void {
    if (!this.available && this.closing === null) throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(this.unavailableReason)
  }

  subscribe (agentId: string, subscriber: Subscriber): () => void {
    const info = this.streamInfo(agentId)
    const streaming = info?.state === 'active' || info?.state === 'lingering'
    const remove = this.locals.add(agentId, subscriber, streaming, info?.interval_seconds ?? null, this.context.now())
    this.demandChanged(agentId)
    return () => {
      if (remove()) this.demandChanged(agentId)
    }
  }

  async hold (agentId: string, intervalSeconds: number): Promise<StreamStatus> {
    this.holds.set(agentId, intervalSeconds)
    this.demandChanged(agentId)
    // In Redis before the answer: a stop sent right after it, to any instance, must find it.
    await this.syncNow()
    if (this.status(agentId).state !== 'active') {
      try {
        await this.untilActive(agentId)
      } catch (err) {
        // A start that failed (or could not be coordinated) leaves no hold behind, as in a single process.
        if (this.holds.get(agentId) === intervalSeconds && this.status(agentId).state !== 'active') {
          this.holds.delete(agentId)
          this.demandChanged(agentId)
        }
        throw err
      }
    }
    // A stop (from any instance) that came in meanwhile ended this hold, as it would reject it in a single process.
    if (!this.holds.has(agentId)) throw new FST_ERR_AGENT_SSE_HOLD_ENDED(agentId)
    return this.status(agentId)
  }

  async release (agentId: string): Promise<StreamStatus> {
    if (this.holds.delete(agentId)) this.holdWaiters.reject(agentId, new FST_ERR_AGENT_SSE_HOLD_ENDED(agentId))
    this.demandChanged(agentId)
    // Holds set through other instances live under their leases: ask them all to drop theirs
    // (also one this instance has not read yet).
    try {
      await this.store.broadcast(encodeMessage({ kind: 'release', agentId }))
    } catch (err) {
      throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE((err as Error).message)
    }
    await this.waitForView(() => this.view.peerDemand(agentId).hold === null, this.renewMs * 2)
    return this.status(agentId)
  }

  holdCount (): number {
    return this.holds.size
  }

  async cancelTask (agentId: string, taskId: string): Promise<StreamStatus | false> {
    const own = this.ownedLive(agentId)
    if (own) {
      if (own.stream.taskId !== taskId) return false
      const stopped = own.stream.cancel()
      if (stopped === null) return false
      await stopped
      await this.syncNow()
      return this.status(agentId)
    }
    const owner = this.view.owner(agentId)
    if (owner === null || owner === this.instanceId || this.view.info(agentId)?.task_id !== taskId) return false
    if (!(await this.askToCancel(owner, agentId, taskId))) return false
    await this.syncNow()
    return this.status(agentId)
  }

  status (agentId: string): StreamStatus {
    const own = this.ownedLive(agentId)
    // This instance's own word beats the last read: a lease it just released may still be in the view.
    const viewOwner = this.view.owner(agentId)
    const owner = own ? this.instanceId : viewOwner === this.instanceId ? null : viewOwner
    const peers = this.view.peerDemand(agentId)
    const hold = this.holds.get(agentId)
    const intervals = [...peers.intervals, ...this.locals.intervals(agentId)]
    if (hold !== undefined) intervals.push(hold)
    const base = idleStatus(agentId)
    const info = owner === null ? null : this.streamInfo(agentId)
    const streaming = owner !== null && info?.state !== 'idle'
    return {
      ...base,
      streamingActive: streaming,
      state: streaming ? info?.state ?? 'starting' : 'idle',
      subscribers: peers.clients + this.locals.count(agentId),
      manualHold: hold !== undefined || peers.hold !== null,
      taskId: streaming ? info?.task_id ?? null : null,
      intervalSeconds: streaming ? info?.interval_seconds ?? null : null,
      startedAt: streaming ? info?.started_at ?? null : null,
      requestedIntervals: intervals.sort((a, b) => a - b),
      owner: streaming ? owner : null
    }
  }

  streamingAgents (): string[] {
    return [...new Set([...[...this.liveOwned()].map((own) => own.agentId), ...this.view.ownedByPeers()])]
  }

  lastEventId (agentId: string): number {
    return this.locals.lastEventId(agentId)
  }

  agentsOfTask (taskId: string): string[] {
    const agents = new Set(this.view.agentsOfTask(taskId))
    for (const own of this.liveOwned()) if (own.stream.taskId === taskId) agents.add(own.agentId)
    return [...agents]
  }

  mayOwn (agentId: string, taskId: string): boolean {
    const own = this.owned.get(agentId)
    if (own) return own.stream.state === 'starting' || own.stream.taskId === taskId
    // Another instance streams the agent: its task is not an orphan, whatever this process was told.
    return this.view.owner(agentId) !== null
  }

  close (): Promise<void> {
    if (this.closing) return this.closing
    this.closing = this.shutdown()
    return this.closing
  }

  // --- demand -------------------------------------------------------------------------

  /** The stream this instance owns for the agent, unless it is giving it up (then a peer's word counts). */
  private ownedLive (agentId: string): OwnedStream | undefined {
    const own = this.owned.get(agentId)
    return own?.abandoned ? undefined : own
  }

  private * liveOwned (): IterableIterator<OwnedStream> {
    for (const own of this.owned.values()) if (!own.abandoned) yield own
  }

  private clusterDemand (agentId: string): ClusterDemand {
    const peers = this.view.peerDemand(agentId)
    return {
      clientInterval: smallest(peers.smallestClientInterval, this.locals.smallestInterval(agentId)),
      hold: smallest(peers.hold, this.holds.get(agentId) ?? null)
    }
  }

  private demandChanged (agentId: string): void {
    // After a pause (GC, SIGSTOP) queued events run before timers: no adapter call on an expired lease.
    this.checkDeadline(this.context.now())
    const own = this.ownedLive(agentId)
    if (own && this.available) own.follow(this.clusterDemand(agentId))
    this.checkHoldWaiters(agentId)
    this.scheduleSync()
  }

  private streamInfo (agentId: string): OwnedStreamInfo | null {
    const own = this.ownedLive(agentId)
    return own ? own.info() : this.view.info(agentId)
  }

  // --- sync with Redis ----------------------------------------------------------------

  private scheduleTick (): void {
    this.tickTimer = this.context.timers.setTimeout(() => {
      this.tickTimer = null
      if (this.closing) return
      this.scheduleSync()
      this.scheduleTick()
    }, this.renewMs)
  }

  /** Coalesces every change within a tick (and while a sync is in flight) into one sync. */
  private scheduleSync (): void {
    if (this.closing || this.syncScheduled) return
    this.syncScheduled = true
    setImmediate(() => {
      this.syncScheduled = false
      this.syncNow().catch(() => {})
    })
  }

  /** Resolves after a sync that started after this call (its read reflects every change made before it). */
  private async syncNow (): Promise<void> {
    const startedBefore = this.syncsStarted
    while (this.syncing) {
      await this.syncing
      if (this.syncsStarted > startedBefore && this.syncing === null) return
    }
    if (this.syncsStarted > startedBefore) return
    this.syncsStarted++
    this.syncing = this.syncOnce().finally(() => { this.syncing = null })
    await this.syncing
  }

  private async syncOnce (): Promise<void> {
    const { redis } = this.settings
    if (redis.status !== 'ready' || this.subscriberConnection?.status !== 'ready') {
      this.connectionDown('Redis is not reachable')
      return
    }
    const sentAt = this.context.now()
    // A renewal sent leaseMs after the last one must not revive leases that may have passed to others meanwhile.
    this.checkDeadline(sentAt)
    const snapshot = this.snapshot()
    const text = JSON.stringify(snapshot)
    const ownedAgents = [...this.owned.values()].filter((own) => !own.abandoned).map((own) => own.agentId)
    let result
    try {
      result = await withTimeout(this.store.sync(snapshot, ownedAgents), this.settings.leaseMs, afterPendingIo(this.context.timers), noAnswer(this.settings.leaseMs))
    } catch (err) {
      this.connectionDown(`Redis did not answer: ${(err as Error).message}`)
      return
    }
    this.renewedAt = sentAt
    this.armDeadline()
    for (const [agentId, outcome] of result.renewed) {
      if (outcome === 0) this.leaseLost(agentId, 'another instance holds its lease')
    }
    this.view.update(result.cluster)
    if (!this.available) this.connectionUp()
    if (text !== this.lastSnapshot) {
      this.lastSnapshot = text
      this.store.broadcast(encodeMessage({ kind: 'changed', instanceId: this.instanceId })).catch(() => {})
    }
    await this.acquireOrphans()
    for (const [agentId, own] of this.owned) own.follow(this.clusterDemand(agentId))
    for (const agentId of this.holdWaiters.keys()) this.checkHoldWaiters(agentId)
  }

  private snapshot (): InstanceSnapshot {
    const agents: InstanceSnapshot['agents'] = {}
    for (const agentId of this.locals.watched()) agents[agentId] = this.locals.demand(agentId)
    for (const [agentId, interval] of this.holds) agents[agentId] = { ...(agents[agentId] ?? this.locals.demand(agentId)), h: interval }
    const owned: InstanceSnapshot['owned'] = {}
    for (const [agentId, own] of this.owned) if (!own.abandoned) owned[agentId] = own.info()
    return { agents, owned }
  }

  /** Takes the lease of every agent this instance has demand for and nobody owns. */
  private async acquireOrphans (): Promise<void> {
    const wanted = new Set([...this.locals.watched(), ...this.holds.keys()])
    for (const agentId of wanted) {
      if (this.closing || !this.available || this.owned.has(agentId) || this.view.owner(agentId) !== null) continue
      if (this.locals.count(agentId) === 0 && !this.holds.has(agentId)) continue
      let acquired = false
      try {
        acquired = await this.store.acquire(agentId)
      } catch (err) {
        this.context.logger.warn({ agentId, err }, `Could not take the lease of agent ${agentId}: ${(err as Error).message}`)
      }
      if (acquired) await this.becomeOwner(agentId)
    }
  }

  private async becomeOwner (agentId: string): Promise<void> {
    const { logger } = this.context
    const own = new OwnedStream(agentId, { ...this.streamContext, adapter: this.fencedAdapter }, {
      sample: (json, intervalSeconds) => this.publishSample(agentId, json, intervalSeconds),
      end: (reason) => this.publishEnd(agentId, reason),
      fail: (err) => this.publishFailure(agentId, err)
    })
    this.owned.set(agentId, own)
    logger.info({ agentId, instanceId: this.instanceId }, `Instance ${this.instanceId} now owns the metrics stream of agent ${agentId}`)
    const previous = await this.store.takePreviousTask(agentId).catch(() => null)
    // Whoever recorded it (a previous process may have had this instance's id), no live stream of
    // this instance runs that task: this stream is new.
    if (previous) {
      logger.warn({ agentId, previousOwner: previous.owner, taskId: previous.taskId }, `Took over agent ${agentId} from instance ${previous.owner}; samples pause until the new task starts. Stopping its task ${previous.taskId} (best effort)`)
      this.stopPreviousTask(agentId, previous.taskId)
    }
    if (this.owned.get(agentId) === own) own.follow(this.clusterDemand(agentId))
  }

  /**
   * The adapter as owned streams see it: a stop first checks in Redis that no successor took the task over
   * (a successor stops its predecessor's task; an owner thawed after losing its lease must not stop it again).
   * Without an answer from Redis the owner stops its task itself: a task nobody stops is the worse outcome.
   */
  private createFencedAdapter (): AgentAdapter {
    const { adapter, logger } = this.context
    const stop = async (agentId: string, taskId: string): Promise<void> => {
      let mine = true
      try {
        mine = await this.store.claimStop(agentId, taskId)
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

  private ownedChanged (agentId: string): void {
    const own = this.owned.get(agentId)
    if (!own) return
    this.checkDeadline(this.context.now())
    const { state } = own.stream
    const taskId = own.stream.taskId
    if (state === 'active' && taskId !== null && !own.abandoned) this.store.recordTask(agentId, taskId).catch(() => {})
    this.checkHoldWaiters(agentId)
    this.scheduleSync()
  }

  private ownedIdle (agentId: string): void {
    const own = this.owned.get(agentId)
    if (!own || own.stream.state !== 'idle') return
    this.owned.delete(agentId)
    this.context.logger.info({ agentId, instanceId: this.instanceId }, `Instance ${this.instanceId} released agent ${agentId}`)
    this.store.release(agentId).catch(() => {})
    this.checkHoldWaiters(agentId)
    this.scheduleSync()
  }

  private leaseLost (agentId: string, why: string): void {
    const own = this.owned.get(agentId)
    if (!own || own.abandoned) return
    this.context.logger.warn({ agentId, instanceId: this.instanceId, taskId: own.stream.taskId }, `Instance ${this.instanceId} lost the lease of agent ${agentId} (${why}), stopping its metrics stream`)
    own.abandon()
  }

  private abandonAll (why: string): void {
    for (const agentId of [...this.owned.keys()]) this.leaseLost(agentId, why)
  }

  /** Past leaseMs since the last renewal, another instance may own what this one streams: stop. */
  private checkDeadline (now: number): void {
    if (this.owned.size > 0 && this.renewedAt > 0 && now - this.renewedAt >= this.settings.leaseMs) {
      this.abandonAll(`could not renew its leases for ${now - this.renewedAt} ms`)
    }
  }

  // Timed from when the last renewal was sent: the leases in Redis run at least until then + leaseMs.
  // Re-armed if it fires a hair early (timers and the wall clock round differently).
  private armDeadline (): void {
    if (this.deadlineTimer !== null) this.context.timers.clearTimeout(this.deadlineTimer)
    const remaining = this.renewedAt + this.settings.leaseMs - this.context.now()
    this.deadlineTimer = this.context.timers.setTimeout(() => {
      this.deadlineTimer = null
      if (this.renewedAt + this.settings.leaseMs > this.context.now()) this.armDeadline()
      else this.checkDeadline(this.context.now())
    }, Math.max(1, remaining))
  }

  // --- publishing (owner) -------------------------------------------------------------

  private publishSample (agentId: string, json: string, intervalSeconds: number): void {
    if (!this.available) return
    // Never below an id any instance has handed out, even if Redis lost the counter and this owner is new.
    const floor = Math.max(this.locals.highestEventId, this.view.peerDemand(agentId).lastEventId)
    this.store.publishSample(agentId, floor, samplePayload(agentId, intervalSeconds, json)).then(
      (eventId) => { if (eventId === 0) this.leaseLost(agentId, 'another instance holds its lease') },
      (err: Error) => this.context.logger.warn({ agentId, err }, `Could not publish a sample of agent ${agentId}: ${err.message}`)
    )
  }

  // The end is applied here once Redis took it (this instance's clients must not restart the stream
  // before the echo arrives), and not at all if the lease is gone: then the stream is another owner's.
  private publishEnd (agentId: string, reason: string): void {
    this.publishAsOwner(agentId, encodeMessage({ kind: 'end', agentId, reason }), () => this.endLocally(agentId, reason))
  }

  private publishFailure (agentId: string, err: Error): void {
    const body = errorBody(err)
    this.publishAsOwner(agentId, encodeMessage({ kind: 'fail', agentId, error: body }), () => this.failLocally(agentId, body))
  }

  private publishAsOwner (agentId: string, message: string, applyHere: () => void): void {
    if (!this.available) return
    this.store.publishAsOwner(agentId, message).then(
      (published) => {
        if (published) applyHere()
        else this.leaseLost(agentId, 'another instance holds its lease')
      },
      (err: Error) => this.context.logger.warn({ agentId, err }, `Could not tell the cluster about agent ${agentId}: ${err.message}`)
    )
  }

  // --- receiving ------------------------------------------------------------------------

  private onMessage (channel: string, text: string): void {
    if (channel === this.store.broadcastChannel) {
      const message = decodeMessage(text)
      if (message) this.onBroadcast(message)
    } else {
      const message = decodeInbox(text)
      if (message) this.onInbox(message)
    }
  }

  private onBroadcast (message: ClusterMessage): void {
    switch (message.kind) {
      case 'sample': return this.locals.receive(message.agentId, message.eventId, message.intervalSeconds, message.json, this.context.now())
      case 'end': return this.endLocally(message.agentId, message.reason)
      case 'fail': return this.failLocally(message.agentId, message.error)
      case 'changed':
        if (message.instanceId !== this.instanceId) this.scheduleSync()
        return
      case 'release':
        if (this.holds.delete(message.agentId)) {
          this.holdWaiters.reject(message.agentId, new FST_ERR_AGENT_SSE_HOLD_ENDED(message.agentId))
          this.demandChanged(message.agentId)
        }
    }
  }

  private endLocally (agentId: string, reason: string): void {
    const ended = reason === 'cancelled' ? new FST_ERR_AGENT_SSE_HOLD_ENDED(agentId) : new FST_ERR_AGENT_SSE_STREAM_ENDED(agentId, reason)
    this.dropLocally(agentId, ended, (subscriber) => subscriber.end(reason))
  }

  private failLocally (agentId: string, body: AgentSseErrorBody): void {
    const err = clusterError(body)
    this.dropLocally(agentId, err, (subscriber) => subscriber.fail(err))
  }

  /** The stream ended for the whole cluster: this instance's clients and hold go with it. */
  private dropLocally (agentId: string, holdError: Error, notify: (subscriber: Subscriber) => void): void {
    this.holds.delete(agentId)
    this.holdWaiters.reject(agentId, holdError)
    this.locals.endAll(agentId, notify)
    this.scheduleSync()
  }

  private onInbox (message: InboxMessage): void {
    if (message.op === 'cancelled') {
      this.pendingCancels.resolve(message.requestId, message.found)
      return
    }
    // Only the named agent's task: task ids are unique per agent, not across agents.
    const own = this.ownedLive(message.agentId)
    const stopped = own?.stream.taskId === message.taskId ? own.stream.cancel() : null
    const answer = (found: boolean): void => {
      this.store.send(message.from, { op: 'cancelled', requestId: message.requestId, found }).catch(() => {})
    }
    if (stopped === null) answer(false)
    else stopped.then(() => answer(true))
  }

  private askToCancel (owner: string, agentId: string, taskId: string): Promise<boolean> {
    const requestId = randomUUID()
    const waitMs = this.context.adapterTimeoutMs + this.settings.leaseMs
    const answered = this.pendingCancels.wait(requestId, waitMs, () =>
      new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(`instance ${owner} did not answer the cancel of task ${taskId} within ${waitMs} ms`))
    this.store.send(owner, { op: 'cancel', requestId, from: this.instanceId, agentId, taskId }).catch((err: Error) => {
      this.pendingCancels.reject(requestId, new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(err.message))
    })
    return answered
  }

  // --- manual holds -------------------------------------------------------------------

  private untilActive (agentId: string): Promise<void> {
    const waitMs = this.context.adapterTimeoutMs + this.settings.leaseMs
    return this.holdWaiters.wait(agentId, waitMs, () => {
      // Nobody got the stream going in time: the hold is dropped, as after a failed start.
      if (this.holds.delete(agentId)) this.demandChanged(agentId)
      return new FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT('startMetricsStreaming', agentId, waitMs)
    })
  }

  private checkHoldWaiters (agentId: string): void {
    if (!this.holdWaiters.has(agentId)) return
    if (!this.holds.has(agentId)) this.holdWaiters.reject(agentId, new FST_ERR_AGENT_SSE_HOLD_ENDED(agentId))
    else if (this.status(agentId).state === 'active') this.holdWaiters.resolve(agentId, undefined)
  }

  /** Syncs until `done` holds or `timeoutMs` passed (peers answer a broadcast on their own time). */
  private async waitForView (done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = this.context.now() + timeoutMs
    await this.syncNow()
    while (!done() && this.context.now() < deadline && this.available) {
      await new Promise((resolve) => this.context.timers.setTimeout(() => resolve(undefined), Math.min(20, this.renewMs)))
      await this.syncNow()
    }
  }

  // --- availability -------------------------------------------------------------------

  private connectionDown (reason: string): void {
    if (this.closing) return
    this.unavailableReason = reason
    if (!this.available) return
    this.available = false
    this.lastSnapshot = ''
    const err = new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(reason)
    this.context.logger.error({ instanceId: this.instanceId, err }, `Cluster coordinator unavailable on instance ${this.instanceId}: ${reason}; closing its SSE clients`)
    // Clients come back through `retry:` and get 503 until Redis does; streams this instance owns
    // keep going until their leases run out (the deadline), then stop.
    this.locals.endEverything((subscriber) => subscriber.fail(err))
    this.holdWaiters.rejectAll(err)
    this.pendingCancels.rejectAll(err)
  }

  private connectionUp (): void {
    this.available = true
    // Redis may have restarted without its scripts; EVALSHA would fall back anyway, this saves the round trips.
    this.store.loadScripts().catch(() => {})
    this.context.logger.info({ instanceId: this.instanceId }, `Cluster coordinator available on instance ${this.instanceId}`)
  }

  // --- close ----------------------------------------------------------------------------

  private async shutdown (): Promise<void> {
    const { timers, logger } = this.context
    if (this.tickTimer !== null) timers.clearTimeout(this.tickTimer)
    if (this.deadlineTimer !== null) timers.clearTimeout(this.deadlineTimer)
    const closed = new FST_ERR_AGENT_SSE_CLOSED()
    this.holdWaiters.rejectAll(closed)
    this.pendingCancels.rejectAll(closed)
    this.holds.clear()
    this.locals.endEverything((subscriber) => subscriber.end('server-shutdown'))
    // The streams stop here but the cluster's clients stay: the next owner takes over.
    const owned = [...this.owned.values()]
    await Promise.all(owned.map((own) => own.abandon()))
    const reachable = this.settings.redis.status === 'ready'
    if (reachable) {
      await withTimeout(Promise.all([
        ...owned.map((own) => this.store.release(own.agentId)),
        this.store.leave()
      ]).then(() => this.store.broadcast(encodeMessage({ kind: 'changed', instanceId: this.instanceId }))), this.renewMs, timers, noAnswer(this.renewMs)).catch((err: Error) => {
        logger.warn({ err }, `Could not leave the cluster cleanly: ${err.message}`)
      })
    }
    for (const undo of this.detach) undo()
    const subscriber = this.subscriberConnection
    if (subscriber) await withTimeout(subscriber.quit(), this.renewMs, timers, noAnswer(this.renewMs)).catch(() => subscriber.disconnect())
    logger.info({ instanceId: this.instanceId }, `Cluster instance ${this.instanceId} left`)
  }
}

function untilReady (connection: Redis): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve()
  return new Promise<void>((resolve) => connection.once('ready', () => resolve()))
}

function smallest (a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null) return a
  return Math.min(a, b)
}

/**
 * Timers whose callbacks wait for the I/O already received: after a pause (SIGSTOP, a long GC) Node
 * runs overdue timers before it reads the sockets, so a reply that did arrive in time would lose
 * to its own timeout. setImmediate runs after the poll phase that delivers it.
 */
function afterPendingIo (timers: LifecycleTimers): LifecycleTimers {
  return {
    setTimeout: (callback, ms) => timers.setTimeout(() => setImmediate(callback), ms),
    clearTimeout: (handle) => timers.clearTimeout(handle)
  }
}

const noAnswer = (ms: number) => (): Error => new Error(`no answer within ${ms} ms`)

/** An error another instance reported, with the same status and code as where it happened. */
function clusterError (body: AgentSseErrorBody): Error {
  return Object.assign(new Error(body.message), { statusCode: body.statusCode, code: body.code })
}
