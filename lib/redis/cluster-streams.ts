import {
  FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT,
  FST_ERR_AGENT_SSE_CLOSED,
  FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE,
  type AgentSseErrorBody
} from '../errors.js'
import { withTimeout } from '../lifecycle/adapter-call.js'
import type { CoordinatedStreams, CoordinatorContext } from '../lifecycle/coordinator.js'
import { holdEndedError } from '../lifecycle/hold-ended.js'
import { streamStatus } from '../lifecycle/stream-status.js'
import type { CoordinatedSubscriber, StreamStatus } from '../lifecycle/types.js'
import { AgentChannels } from './agent-channels.js'
import { AgentViews, type AgentRead } from './agent-views.js'
import { afterPendingIo, LeaseDeadline } from './lease-deadline.js'
import { ClusterKeys } from './keys.js'
import { LocalClients } from './local-clients.js'
import { decodeInbox, decodeMessage, encodeMessage, type AgentMessage, type InboxMessage } from './messages.js'
import type { ClusterDemand } from './owned-stream.js'
import { Ownership } from './ownership.js'
import { DemandWriter } from './demand-writer.js'
import { RemoteCancels } from './remote-cancels.js'
import { AgentReads } from './agent-reads.js'
import { encodeDemand, type StreamInfo } from './records.js'
import { isCluster, untilReady, type RedisClient } from './redis-client.js'
import { RedisStore, type Renewal } from './store.js'
import { TimedWaits } from './timed-waits.js'

export interface ClusterSettings {
  redis: RedisClient
  keyPrefix: string
  leaseMs: number
  instanceId: string
}

/**
 * One instance of a cluster that shares reference counts through Redis, per agent.
 *
 * Each agent has its own keys (one hash slot): its lease, its demand (a hash with a field per instance that
 * wants it, each with a deadline) and its owner's description of the stream. A change of this instance's
 * demand for an agent is one script call, which tells only the agent's owner. The owner runs the
 * single-process state machine for the cluster's demand and publishes each sample once, on the agent's
 * channel, which only the instances with subscribers of the agent listen to. One script call per renewal
 * period (leaseMs/3) renews all of this instance's leases and demand and reads back the agents it tracks.
 * See README "Running more than one instance".
 */
export class ClusterStreams implements CoordinatedStreams {
  private readonly keys: ClusterKeys
  private readonly store: RedisStore
  private readonly views: AgentViews
  private readonly renewMs: number
  private readonly locals: LocalClients
  /** Manual holds set through this instance. */
  private readonly holds = new Map<string, number>()
  private readonly ownership: Ownership
  /** `hold()` callers waiting for the stream to be active, by agent. */
  private readonly holdWaiters: TimedWaits
  private readonly cancels: RemoteCancels
  private readonly deadline: LeaseDeadline
  private channels: AgentChannels | null = null
  private subscriberConnection: RedisClient | null = null
  private available = false
  private unavailableReason = 'not connected yet'
  private closing: Promise<void> | null = null
  private tickTimer: unknown = null
  private renewing: Promise<void> | null = null
  private renewalScheduled = false
  private readonly demandRecords: DemandWriter
  private readonly reads: AgentReads
  private readonly detach: Array<() => void> = []

  constructor (private readonly context: CoordinatorContext, private readonly settings: ClusterSettings) {
    this.keys = new ClusterKeys(settings.keyPrefix)
    this.store = new RedisStore(settings.redis, this.keys, settings.instanceId, settings.leaseMs, (what, agentId) => {
      context.logger.warn({ agentId }, `Dropped ${what} of agent ${agentId} read from Redis: it is not valid`)
    })
    this.views = new AgentViews(settings.instanceId)
    this.renewMs = Math.max(1, Math.floor(settings.leaseMs / 3))
    this.locals = new LocalClients(context.replayBufferSize, context.logger, context.timers, () => context.now())
    this.holdWaiters = new TimedWaits(context.timers)
    this.cancels = new RemoteCancels(this.store, settings.instanceId, context.timers, context.adapterTimeoutMs + settings.leaseMs)
    this.ownership = new Ownership(context, this.store, settings.instanceId, {
      demand: (agentId) => this.clusterDemand(agentId),
      refresh: (agentId) => this.reads.read(agentId),
      eventIdFloor: (agentId) => Math.max(this.locals.highestEventId, this.views.peerDemand(agentId).lastEventId),
      available: () => this.available,
      closing: () => this.closing !== null,
      checkDeadline: () => this.deadline.check(),
      changed: (agentId) => this.checkHoldWaiters(agentId),
      ended: (agentId, reason) => this.endLocally(agentId, reason),
      failed: (agentId, body) => this.failLocally(agentId, body)
    })
    this.reads = new AgentReads(this.store, context.logger, () => context.now(), this.renewMs, {
      follows: (agentId) => this.follows(agentId),
      apply: (agentId, read) => this.applyRead(agentId, read),
      available: () => this.available,
      closing: () => this.closing !== null
    })
    this.demandRecords = new DemandWriter(this.store, context.logger, {
      record: (agentId) => this.demandRecord(agentId),
      available: () => this.available,
      closing: () => this.closing !== null,
      written: async (agentId, changed) => {
        this.applyRead(agentId, changed.read)
        if (changed.acquired) await this.ownership.acquired(agentId)
      }
    })
    this.deadline = new LeaseDeadline(settings.leaseMs, context.timers, () => context.now(), (why) => this.ownership.abandonAll(why), () => this.ownership.size > 0)
  }

  get instanceId (): string {
    return this.settings.instanceId
  }

  async ready (): Promise<void> {
    const { redis } = this.settings
    if (redis.status === 'wait') await redis.connect()
    await untilReady(redis)
    // On a Redis Cluster the agent channels are sharded: one subscriber connection per primary, each agent's
    // messages on its slot's shard only. The inbox is a plain channel (a demand change names it from any slot).
    const subscriber = isCluster(redis) ? redis.duplicate([], { shardedSubscribers: true }) : redis.duplicate()
    this.subscriberConnection = subscriber
    if (subscriber.status === 'wait') await subscriber.connect()
    // Without a listener ioredis reports every failed reconnect as an unhandled error.
    subscriber.on('error', () => {})
    subscriber.on('message', (channel: string, text: string) => this.onMessage(channel, text))
    subscriber.on('smessage', (channel: string, text: string) => this.onMessage(channel, text))
    await untilReady(subscriber)
    await subscriber.subscribe(this.keys.inbox(this.instanceId))
    this.channels = new AgentChannels(subscriber, this.keys, this.context.logger)
    for (const connection of [redis, subscriber]) {
      const down = (): void => this.connectionDown(connection === redis ? 'the Redis connection closed' : 'the Redis subscriber connection closed')
      const up = (): void => this.scheduleRenewal()
      connection.on('close', down)
      connection.on('ready', up)
      this.detach.push(() => { connection.off('close', down); connection.off('ready', up) })
    }
    await this.store.loadScripts()
    await this.renewOnce()
    if (!this.available) throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(this.unavailableReason)
    this.context.logger.info({ instanceId: this.instanceId, leaseMs: this.settings.leaseMs }, `Cluster instance ${this.instanceId} joined (lease ${this.settings.leaseMs} ms)`)
    this.scheduleTick()
  }

  assertAvailable (): void {
    if (!this.available && this.closing === null) throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(this.unavailableReason)
  }

  subscribe (agentId: string, subscriber: CoordinatedSubscriber): () => void {
    const info = this.streamInfo(agentId)
    const streaming = info?.s === 'active' || info?.s === 'lingering'
    const remove = this.locals.add(agentId, subscriber, streaming, info?.v ?? null, this.context.now())
    this.demandChanged(agentId)
    return () => {
      if (remove()) this.demandChanged(agentId)
    }
  }

  async hold (agentId: string, intervalSeconds: number): Promise<StreamStatus> {
    this.holds.set(agentId, intervalSeconds)
    this.demandChanged(agentId)
    // In Redis before the answer: a stop sent right after it, to any instance, must find it.
    await this.demandRecords.write()
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
    if (!this.holds.has(agentId)) throw holdEndedError(agentId, null)
    return this.status(agentId)
  }

  async release (agentId: string): Promise<StreamStatus> {
    if (this.holds.delete(agentId)) this.holdWaiters.reject(agentId, holdEndedError(agentId, null))
    this.demandChanged(agentId)
    // Holds set through other instances are theirs: ask them (they listen on the agent's channel) to drop them.
    try {
      await this.demandRecords.write()
      await this.store.publishToAgent(agentId, encodeMessage({ kind: 'release' }))
    } catch (err) {
      throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE((err as Error).message)
    }
    await this.waitForView(agentId, () => this.views.peerDemand(agentId).hold === null, this.renewMs * 2)
    return this.status(agentId)
  }

  holdCount (): number {
    return this.holds.size
  }

  async cancelTask (agentId: string, taskId: string): Promise<StreamStatus | false> {
    const own = this.ownership.live(agentId)
    if (own) {
      const stopped = own.stream.cancel(taskId)
      if (stopped === null) return false
      await stopped
      await this.reads.read(agentId)
      return this.status(agentId)
    }
    await this.reads.read(agentId)
    const owner = this.views.owner(agentId)
    if (owner === null || owner === this.instanceId || this.views.info(agentId)?.t !== taskId) return false
    if (!(await this.cancels.ask(owner, agentId, taskId))) return false
    await this.reads.read(agentId)
    return this.status(agentId)
  }

  status (agentId: string): StreamStatus {
    this.reads.askedAbout(agentId)
    const own = this.ownership.live(agentId)
    // This instance's own word beats the last read: a lease it just released may still be in the view.
    const viewOwner = this.views.owner(agentId)
    const owner = own ? this.instanceId : viewOwner === this.instanceId ? null : viewOwner
    const peers = this.views.peerDemand(agentId)
    const hold = this.holds.get(agentId)
    const requestedIntervals = [...peers.intervals, ...this.locals.intervals(agentId)]
    if (hold !== undefined) requestedIntervals.push(hold)
    const info = owner === null ? null : this.streamInfo(agentId)
    // An owner that has not described its stream yet is starting it.
    const state = owner === null || info?.s === 'idle' ? 'idle' : info?.s ?? 'starting'
    const demand = { subscribers: peers.clients + this.locals.count(agentId), manualHold: hold !== undefined || peers.hold !== null, requestedIntervals }
    return streamStatus(agentId, state, demand, info && { taskId: info.t, intervalSeconds: info.v, startedAt: info.a }, owner)
  }

  async refresh (agentIds: readonly string[] | null): Promise<void> {
    if (agentIds === null) {
      await this.reads.readStreamed()
      return
    }
    // An agent this instance neither follows nor was asked about lately has no view here yet: read it
    // now (then the renewal keeps it current while it is asked about), so a first answer is right too.
    const unknown = agentIds.filter((agentId) => !this.follows(agentId) && !this.reads.isAsked(agentId))
    for (const agentId of agentIds) this.reads.askedAbout(agentId)
    await Promise.all(unknown.map((agentId) => this.reads.read(agentId)))
  }

  streamingAgents (): string[] {
    const agents = new Set([...[...this.ownership.allLive()].map((own) => own.agentId), ...this.views.ownedByPeers()])
    // Agents streamed elsewhere that this instance does not follow yet: read now, described from the next call.
    for (const agentId of this.reads.streamedAnywhere()) if (!agents.has(agentId)) this.reads.askedAbout(agentId)
    return [...agents]
  }

  lastEventId (agentId: string): number {
    return this.locals.lastEventId(agentId)
  }

  agentsOfTask (taskId: string): string[] {
    return [...new Set([...this.views.agentsOfTask(taskId), ...this.ownership.agentsOfTask(taskId)])]
  }

  mayOwn (agentId: string, taskId: string): boolean {
    const own = this.ownership.get(agentId)
    if (own) return own.stream.state === 'starting' || own.stream.taskId === taskId
    // Another instance streams the agent: its task is not an orphan, whatever this process was told.
    return this.views.owner(agentId) !== null
  }

  close (): Promise<void> {
    if (this.closing) return this.closing
    this.closing = this.shutdown()
    return this.closing
  }

  // --- demand -------------------------------------------------------------------------

  private clusterDemand (agentId: string): ClusterDemand {
    const peers = this.views.peerDemand(agentId)
    return {
      clientInterval: smallest(peers.smallestClientInterval, this.locals.smallestInterval(agentId)),
      hold: smallest(peers.hold, this.holds.get(agentId) ?? null)
    }
  }

  /** This instance's demand record for the agent, '' for none. */
  private demandRecord (agentId: string): string {
    const hold = this.holds.get(agentId) ?? null
    if (this.locals.count(agentId) === 0 && hold === null) return ''
    return encodeDemand({ ...this.locals.demand(agentId), h: hold })
  }

  private demandChanged (agentId: string): void {
    // After a pause (GC, SIGSTOP) queued events run before timers: no adapter call on an expired lease.
    this.deadline.check()
    this.ownership.follow(agentId)
    this.checkHoldWaiters(agentId)
    this.channels?.want(agentId, this.locals.count(agentId) > 0 || this.holds.has(agentId))
    this.demandRecords.changed(agentId)
  }

  private applyRead (agentId: string, read: AgentRead): void {
    if (!this.tracks(agentId)) return
    this.views.apply(agentId, read)
    this.applyDemandToOwned(agentId)
  }

  /** The owner, told that the agent's demand changed: reads that alone. */
  private refreshDemand (agentId: string): void {
    this.store.readDemand(agentId).then((demands) => {
      if (!this.ownership.live(agentId)) return
      this.views.applyDemand(agentId, demands)
      this.applyDemandToOwned(agentId)
    }, (err: Error) => this.context.logger.warn({ agentId, err }, `Could not read the demand for agent ${agentId}: ${err.message}`))
  }

  private applyDemandToOwned (agentId: string): void {
    this.ownership.follow(agentId)
    this.checkHoldWaiters(agentId)
  }

  /** Whether this instance follows the agent: it keeps its view of it up to date. */
  private tracks (agentId: string): boolean {
    return this.follows(agentId) || this.reads.isAsked(agentId)
  }

  private follows (agentId: string): boolean {
    return this.locals.count(agentId) > 0 || this.holds.has(agentId) || this.ownership.has(agentId) || this.demandRecords.has(agentId)
  }

  private streamInfo (agentId: string): StreamInfo | null {
    return this.ownership.info(agentId) ?? this.views.info(agentId)
  }

  // --- renewal --------------------------------------------------------------------------

  private scheduleTick (): void {
    this.tickTimer = this.context.timers.setTimeout(() => {
      this.tickTimer = null
      if (this.closing) return
      this.scheduleRenewal()
      this.scheduleTick()
    }, this.renewMs)
  }

  private scheduleRenewal (): void {
    if (this.closing || this.renewalScheduled) return
    this.renewalScheduled = true
    setImmediate(() => {
      this.renewalScheduled = false
      if (this.renewing) return
      this.renewing = this.renewOnce().finally(() => { this.renewing = null })
    })
  }

  private renewals (): Renewal[] {
    const agents = new Set([...this.locals.watched(), ...this.holds.keys(), ...this.ownership.agents(), ...this.demandRecords.agents(), ...this.reads.recentlyAsked()])
    for (const agentId of this.views.tracked()) if (!agents.has(agentId)) this.views.forget(agentId)
    const renewals: Renewal[] = []
    for (const agentId of agents) {
      const demand = this.demandRecord(agentId)
      const mode = this.ownership.live(agentId) ? 'o' : demand !== '' || this.demandRecords.has(agentId) ? 'w' : 'q'
      renewals.push({ agentId, mode, demand })
    }
    return renewals
  }

  private async renewOnce (): Promise<void> {
    const { redis } = this.settings
    if (redis.status !== 'ready' || this.subscriberConnection?.status !== 'ready') {
      this.connectionDown('Redis is not reachable')
      return
    }
    const sentAt = this.context.now()
    // A renewal sent leaseMs after the last one must not revive leases that may have passed to others meanwhile.
    this.deadline.check(sentAt)
    const renewals = this.renewals()
    const streaming = [...this.ownership.allLive()].filter((own) => own.stream.state !== 'idle').map((own) => own.agentId)
    let renewed
    try {
      renewed = await withTimeout(this.store.renew(renewals, streaming), this.settings.leaseMs, afterPendingIo(this.context.timers), noAnswer(this.settings.leaseMs))
    } catch (err) {
      this.connectionDown(`Redis did not answer: ${(err as Error).message}`)
      return
    }
    this.deadline.renewed(sentAt)
    if (!this.available) this.connectionUp()
    for (const { agentId, demand } of renewals) {
      const result = renewed.get(agentId)!
      this.demandRecords.renewed(agentId, demand)
      if (result.outcome === 0) this.ownership.leaseLost(agentId, 'another instance holds its lease')
      // Redis lost the lease (and so the stream's description and task record): describe it again.
      if (result.outcome === 2 || (result.outcome === 1 && result.read.info === null)) this.ownership.describe(agentId)
      this.applyRead(agentId, result.read)
      if (result.outcome === 3) await this.ownership.acquired(agentId)
    }
    for (const agentId of this.holdWaiters.keys()) this.checkHoldWaiters(agentId)
  }

  // --- receiving ------------------------------------------------------------------------

  private onMessage (channel: string, text: string): void {
    if (channel === this.keys.inbox(this.instanceId)) {
      const message = decodeInbox(text)
      if (message) this.onInbox(message)
      else this.context.logger.warn({ channel }, 'Dropped a malformed message on this instance\'s inbox')
      return
    }
    const agentId = this.channels?.agentOf(channel) ?? null
    if (agentId === null) return
    const message = decodeMessage(text)
    if (message) this.onAgentMessage(agentId, message)
    else this.context.logger.warn({ agentId }, `Dropped a malformed message on the channel of agent ${agentId}`)
  }

  private onAgentMessage (agentId: string, message: AgentMessage): void {
    switch (message.kind) {
      case 'sample': return this.locals.receive(agentId, message.eventId, message.intervalSeconds, message.json, this.context.now())
      case 'info':
        if (message.info.o === this.instanceId) return
        this.views.applyInfo(agentId, message.at, message.info)
        this.checkHoldWaiters(agentId)
        return
      case 'end':
        if (this.ownership.live(agentId)) return // this instance applied its own end already
        if (this.isLiveTask(agentId, message.taskId)) this.endLocally(agentId, message.reason)
        else this.droppedForeign(agentId, 'end', message.taskId)
        return
      case 'fail':
        if (this.ownership.live(agentId)) return
        if (this.isLiveTask(agentId, message.taskId)) this.failLocally(agentId, message.error)
        else this.droppedForeign(agentId, 'failure', message.taskId)
        return
      case 'release':
        if (this.holds.delete(agentId)) {
          this.holdWaiters.reject(agentId, holdEndedError(agentId, null))
          this.demandChanged(agentId)
        }
    }
  }

  /** Whether an end or failure names the agent's live task (or a start that has no task yet). */
  private isLiveTask (agentId: string, taskId: string | null): boolean {
    const info = this.views.info(agentId)
    if (taskId === null) return info === null || info.s === 'starting'
    return info?.t === taskId || this.views.lastTask(agentId) === taskId
  }

  private droppedForeign (agentId: string, what: string, taskId: string | null): void {
    this.context.logger.warn({ agentId, taskId }, `Dropped an ${what} message of agent ${agentId} for task ${String(taskId)}, which is not its live task`)
  }

  private endLocally (agentId: string, reason: string): void {
    // The end message of a cancel says 'cancelled' (an agent ending its task with that reason reads the same).
    const ended = holdEndedError(agentId, reason === 'cancelled' ? null : reason)
    this.dropLocally(agentId, ended, (subscriber) => subscriber.end(reason))
  }

  private failLocally (agentId: string, body: AgentSseErrorBody): void {
    const err = clusterError(body)
    this.dropLocally(agentId, err, (subscriber) => subscriber.fail(err))
  }

  /** The stream ended for the whole cluster: this instance's clients and hold go with it. */
  private dropLocally (agentId: string, holdError: Error, notify: (subscriber: CoordinatedSubscriber) => void): void {
    this.holds.delete(agentId)
    this.holdWaiters.reject(agentId, holdError)
    this.locals.endAll(agentId, notify)
    this.demandChanged(agentId)
  }

  private onInbox (message: InboxMessage): void {
    if (message.op === 'demand') {
      // Only the owner is told; anything else is stale or foreign.
      if (this.ownership.live(message.agentId)) this.refreshDemand(message.agentId)
      return
    }
    if (message.op === 'cancelled') this.cancels.answered(message.requestId, message.found)
    else this.cancels.answer(message, this.ownership)
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
    if (!this.holds.has(agentId)) this.holdWaiters.reject(agentId, holdEndedError(agentId, null))
    else if (this.status(agentId).state === 'active') this.holdWaiters.resolve(agentId, undefined)
  }

  /** Reads the agent until `done` holds or `timeoutMs` passed (peers answer a message on their own time). */
  private async waitForView (agentId: string, done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = this.context.now() + timeoutMs
    await this.reads.read(agentId)
    while (!done() && this.context.now() < deadline && this.available) {
      await new Promise((resolve) => this.context.timers.setTimeout(() => resolve(undefined), Math.min(20, this.renewMs)))
      await this.reads.read(agentId)
    }
  }

  // --- availability -------------------------------------------------------------------

  private connectionDown (reason: string): void {
    if (this.closing) return
    this.unavailableReason = reason
    if (!this.available) return
    this.available = false
    const err = new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(reason)
    this.context.logger.error({ instanceId: this.instanceId, err }, `Cluster coordinator unavailable on instance ${this.instanceId}: ${reason}; closing its SSE clients`)
    // Clients come back through `retry:` and get 503 until Redis does; streams this instance owns
    // keep going until their leases run out (the deadline), then stop.
    this.locals.endEverything((subscriber) => subscriber.fail(err))
    for (const agentId of this.channels?.agents() ?? []) this.channels?.want(agentId, this.holds.has(agentId))
    this.holdWaiters.rejectAll(err)
    this.cancels.rejectAll(err)
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
    this.deadline.stop()
    const closed = new FST_ERR_AGENT_SSE_CLOSED()
    this.holdWaiters.rejectAll(closed)
    this.cancels.rejectAll(closed)
    this.holds.clear()
    this.locals.endEverything((subscriber) => subscriber.end('server-shutdown'))
    // The streams stop here but the cluster's subscribers stay: the next owner takes over.
    await this.ownership.close()
    const reachable = this.settings.redis.status === 'ready'
    if (reachable) {
      await withTimeout(Promise.all([
        ...this.ownership.releaseAll(),
        ...this.demandRecords.removeAll()
      ]), this.renewMs, timers, noAnswer(this.renewMs)).catch((err: Error) => {
        logger.warn({ err }, `Could not leave the cluster cleanly: ${err.message}`)
      })
    }
    for (const undo of this.detach) undo()
    const subscriber = this.subscriberConnection
    if (subscriber) await withTimeout(subscriber.quit(), this.renewMs, timers, noAnswer(this.renewMs)).catch(() => subscriber.disconnect())
    logger.info({ instanceId: this.instanceId }, `Cluster instance ${this.instanceId} left`)
  }
}

function smallest (a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null) return a
  return Math.min(a, b)
}

const noAnswer = (ms: number) => (): Error => new Error(`no answer within ${ms} ms`)

/** An error another instance reported, with the same status and code as where it happened. */
function clusterError (body: AgentSseErrorBody): Error {
  return Object.assign(new Error(body.message), { statusCode: body.statusCode, code: body.code })
}
