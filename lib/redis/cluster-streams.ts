import { FST_ERR_AGENT_SSE_CLOSED, type AgentSseErrorBody } from '../errors.js'
import { withTimeout } from '../lifecycle/adapter-call.js'
import type { CoordinatedStreams, CoordinatorContext } from '../lifecycle/coordinator.js'
import { holdEndedError } from '../lifecycle/hold-ended.js'
import { streamStatus } from '../lifecycle/stream-status.js'
import type { CoordinatedSubscriber, StreamStatus } from '../lifecycle/types.js'
import { AgentChannels } from './agent-channels.js'
import { AgentReads } from './agent-reads.js'
import { AgentViews, type AgentRead } from './agent-views.js'
import { Availability, noAnswer } from './availability.js'
import { DemandView } from './demand-view.js'
import { DemandWriter } from './demand-writer.js'
import { IncomingMessages, type DemandChange } from './incoming-messages.js'
import { ClusterKeys } from './keys.js'
import { afterPendingIo, LeaseDeadline } from './lease-deadline.js'
import { LocalClients } from './local-clients.js'
import { ManualHolds } from './manual-holds.js'
import { Ownership } from './ownership.js'
import type { StreamInfo } from './records.js'
import type { RedisClient } from './redis-client.js'
import { RedisStore } from './store.js'
import { RemoteCancels } from './remote-cancels.js'
import { RenewalLoop } from './renewal-loop.js'

export interface ClusterSettings {
  redis: RedisClient
  keyPrefix: string
  leaseMs: number
  instanceId: string
}

/** How long the latest sample read on a new subscription waits for what was already on its way (see catchUp). */
const CATCH_UP_SETTLE_MS = 20

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
 *
 * This class puts the parts together (connections and availability, the renewal loop, the incoming messages,
 * manual holds, ownership, reads, demand records and their view, local clients) and tells them when this
 * instance's demand, or what it knows of an agent, changed.
 */
export class ClusterStreams implements CoordinatedStreams {
  private readonly keys: ClusterKeys
  private readonly store: RedisStore
  private readonly views: AgentViews
  private readonly renewMs: number
  private readonly locals: LocalClients
  private readonly holds: ManualHolds
  private readonly demand: DemandView
  private readonly ownership: Ownership
  private readonly cancels: RemoteCancels
  private readonly deadline: LeaseDeadline
  private readonly demandRecords: DemandWriter
  private readonly reads: AgentReads
  private readonly availability: Availability
  private readonly incoming: IncomingMessages
  private readonly renewal: RenewalLoop
  private channels: AgentChannels | null = null
  private closing: Promise<void> | null = null

  constructor (private readonly context: CoordinatorContext, private readonly settings: ClusterSettings) {
    const { logger, timers } = context
    const now = (): number => context.now()
    const available = (): boolean => this.availability.isAvailable
    const closing = (): boolean => this.closing !== null
    this.keys = new ClusterKeys(settings.keyPrefix)
    this.store = new RedisStore(settings.redis, this.keys, settings.instanceId, settings.leaseMs, (what, agentId) => {
      logger.warn({ agentId }, `Dropped ${what} of agent ${agentId} read from Redis: it is not valid`)
    })
    this.views = new AgentViews(settings.instanceId)
    this.renewMs = Math.max(1, Math.floor(settings.leaseMs / 3))
    this.locals = new LocalClients(context.replayBufferSize, logger, timers, now)
    this.cancels = new RemoteCancels(this.store, settings.instanceId, timers, context.adapterTimeoutMs + settings.leaseMs)
    this.availability = new Availability(settings.redis, settings.instanceId, logger, {
      message: (channel, text) => this.incoming.receive(channel, text),
      reconnected: () => this.renewal.schedule(),
      // Redis may have restarted without its scripts; EVALSHA would fall back anyway, this saves the round trips.
      restored: () => { this.store.loadScripts().catch(() => {}) },
      lost: (err) => this.unavailable(err),
      closing
    })
    this.ownership = new Ownership(context, this.store, settings.instanceId, {
      demand: (agentId) => this.demand.cluster(agentId),
      refresh: (agentId) => this.reads.read(agentId),
      eventIdFloor: (agentId) => Math.max(this.locals.highestEventId, this.views.peerDemand(agentId).lastEventId),
      available,
      closing,
      checkDeadline: () => this.deadline.check(),
      leaseTaken: () => this.deadline.leaseTaken(),
      changed: (agentId) => {
        this.listen(agentId)
        this.holds.check(agentId)
      },
      ended: (agentId, reason) => this.endLocally(agentId, reason),
      failed: (agentId, body) => this.failLocally(agentId, body)
    })
    this.reads = new AgentReads(this.store, logger, now, this.renewMs, {
      follows: (agentId) => this.demand.follows(agentId),
      apply: (agentId, read) => this.applyRead(agentId, read),
      available,
      closing
    })
    this.demandRecords = new DemandWriter(this.store, logger, {
      record: (agentId) => this.demand.record(agentId),
      available,
      closing,
      written: async (agentId, changed, sentAt) => {
        this.applyRead(agentId, changed.read)
        if (changed.acquired) await this.ownership.acquired(agentId, sentAt)
      },
      now
    })
    const holdTimes = { untilActiveMs: context.adapterTimeoutMs + settings.leaseMs, renewMs: this.renewMs }
    this.holds = new ManualHolds(this.store, this.demandRecords, this.reads, this.views, timers, now, holdTimes, {
      changed: (agentId) => this.demandChanged(agentId),
      status: (agentId) => this.status(agentId),
      available
    })
    this.demand = new DemandView(this.locals, this.holds, this.views, this.ownership, this.demandRecords, this.reads, (agentId) => this.channels?.listens(agentId) ?? false)
    this.incoming = new IncomingMessages(this.keys, settings.instanceId, this.views, this.ownership, this.locals, this.cancels, logger, () => this.channels, {
      described: (agentId) => this.holds.check(agentId),
      ended: (agentId, reason) => this.endLocally(agentId, reason),
      failed: (agentId, body) => this.failLocally(agentId, body),
      released: (agentId) => this.holds.releasedElsewhere(agentId),
      demandChanged: (agentId, demands) => this.ownerDemandChanged(agentId, demands),
      lastEnding: (agentId) => this.store.lastEnding(agentId),
      now,
      redisNow: () => this.store.redisNow()
    })
    this.deadline = new LeaseDeadline(settings.leaseMs, timers, now, (sentBy, why) => this.ownership.abandonExpired(sentBy, why), () => this.ownership.oldestLease())
    this.renewal = new RenewalLoop(this.store, this.availability, this.ownership, this.demandRecords, this.views, this.deadline, timers, now, this.renewMs, settings.leaseMs, {
      agents: () => new Set([...this.locals.watched(), ...this.holds.agents(), ...this.ownership.agents(), ...this.demandRecords.agents(), ...this.reads.recentlyAsked()]),
      record: (agentId) => this.demand.record(agentId),
      apply: (agentId, read) => this.applyRead(agentId, read),
      renewed: () => this.holds.checkAll(),
      acquireFailed: (err) => logger.error({ err }, `Could not take over an agent whose lease this instance took: ${err.message}`),
      closing
    })
  }

  get instanceId (): string {
    return this.settings.instanceId
  }

  async ready (): Promise<void> {
    const subscriber = await this.availability.connect(this.keys.inbox(this.instanceId))
    this.channels = new AgentChannels(subscriber, this.keys, this.context.logger, (agentId) => {
      this.catchUp(agentId)
      // This instance's clients and hold count in the cluster from now on (see DemandView.record).
      this.demandRecords.changed(agentId)
      // An owner listening for demand changes only now: one may have come before.
      if (this.ownership.live(agentId) && !this.demand.wanted(agentId)) this.reads.read(agentId).catch(() => {})
    })
    await this.store.loadScripts()
    await this.renewal.renew()
    this.availability.assertAvailable()
    this.context.logger.info({ instanceId: this.instanceId, leaseMs: this.settings.leaseMs }, `Cluster instance ${this.instanceId} joined (lease ${this.settings.leaseMs} ms)`)
    this.renewal.start()
  }

  assertAvailable (): void {
    if (this.closing === null) this.availability.assertAvailable()
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

  hold (agentId: string, intervalSeconds: number): Promise<StreamStatus> {
    return this.holds.hold(agentId, intervalSeconds)
  }

  release (agentId: string): Promise<StreamStatus> {
    return this.holds.release(agentId)
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
    const info = owner === null ? null : this.streamInfo(agentId)
    // An owner that has not described its stream yet is starting it.
    const state = owner === null || info?.s === 'idle' ? 'idle' : info?.s ?? 'starting'
    return streamStatus(agentId, state, this.demand.status(agentId), info && { taskId: info.t, intervalSeconds: info.v, startedAt: info.a }, owner)
  }

  async refresh (agentIds: readonly string[] | null): Promise<void> {
    if (agentIds === null) {
      await this.reads.readStreamed()
      return
    }
    // An agent this instance neither follows nor was asked about lately has no view here yet: read it
    // now (then the renewal keeps it current while it is asked about), so a first answer is right too.
    const unknown = agentIds.filter((agentId) => !this.demand.tracks(agentId))
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

  // This instance's demand, or what it knows of an agent, changed: the parts that follow it are told.

  private demandChanged (agentId: string): void {
    // After a pause (GC, SIGSTOP) queued events run before timers: no adapter call on an expired lease.
    this.deadline.check()
    this.ownership.follow(agentId)
    this.holds.check(agentId)
    this.listen(agentId)
    this.demandRecords.changed(agentId)
  }

  /** This instance listens to the channel of every agent it has clients or a hold of, or owns (demand changes). */
  private listen (agentId: string): void {
    this.channels?.want(agentId, this.demand.wanted(agentId) || this.ownership.live(agentId) !== undefined)
  }

  private applyRead (agentId: string, read: AgentRead): void {
    if (!this.demand.tracks(agentId)) return
    this.views.apply(agentId, read)
    this.applyDemandToOwned(agentId)
  }

  /** The owner, told that the agent's demand changed: with the demand the change left, or it reads that alone. */
  private ownerDemandChanged (agentId: string, change: DemandChange | null): void {
    const apply = ({ at, demands }: DemandChange): void => {
      if (!this.ownership.live(agentId)) return
      this.views.applyDemand(agentId, at, demands)
      this.applyDemandToOwned(agentId)
    }
    if (change !== null) apply(change)
    else this.store.readDemand(agentId).then(apply, (err: Error) => this.context.logger.warn({ agentId, err }, `Could not read the demand for agent ${agentId}: ${err.message}`))
  }

  /**
   * This instance now listens to the agent's channel: a sample published just before that did not reach it, so
   * the latest one comes from Redis. It is taken only if the channel brought nothing meanwhile, checked once the
   * messages published before the read had time to arrive (they travel on the other connection): a newer sample
   * from the channel says the subscription works, and the one read may be older than samples still on their way,
   * which a history would then refuse.
   */
  private catchUp (agentId: string): void {
    const before = this.locals.lastEventId(agentId)
    this.store.latestSample(agentId).then((text) => {
      if (text === null) return
      afterPendingIo(this.context.timers).setTimeout(() => {
        if (this.locals.lastEventId(agentId) === before) this.incoming.catchUp(agentId, text)
      }, CATCH_UP_SETTLE_MS)
    }, (err: Error) => this.context.logger.warn({ agentId, err }, `Could not read the latest sample of agent ${agentId}: ${err.message}`))
  }

  private applyDemandToOwned (agentId: string): void {
    this.ownership.follow(agentId)
    this.holds.check(agentId)
  }

  private streamInfo (agentId: string): StreamInfo | null {
    return this.ownership.info(agentId) ?? this.views.info(agentId)
  }

  // How the stream's end reaches this instance's clients and hold, and what going unavailable and closing take.

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
    this.holds.drop(agentId, holdError)
    this.locals.endAll(agentId, notify)
    this.demandChanged(agentId)
  }

  /**
   * Redis is unreachable: clients come back through `retry:` and get 503 until it is; streams this instance owns
   * keep going until their leases run out (the deadline), then stop.
   */
  private unavailable (err: Error): void {
    this.locals.endEverything((subscriber) => subscriber.fail(err))
    for (const agentId of this.channels?.agents() ?? []) this.channels?.want(agentId, this.holds.has(agentId))
    this.holds.rejectWaiters(err)
    this.cancels.rejectAll(err)
  }

  private async shutdown (): Promise<void> {
    const { timers, logger } = this.context
    const renewalAnswered = this.renewal.stop()
    this.deadline.stop()
    const closed = new FST_ERR_AGENT_SSE_CLOSED()
    this.holds.close(closed)
    this.cancels.rejectAll(closed)
    this.locals.endEverything((subscriber) => subscriber.end('server-shutdown'))
    // The streams stop here but the cluster's subscribers stay: the next owner takes over.
    await this.ownership.close()
    if (this.settings.redis.status === 'ready') {
      await withTimeout(Promise.all([
        ...this.ownership.releaseAll(),
        renewalAnswered.then(() => this.demandRecords.removeAll())
      ]), this.renewMs, timers, noAnswer(this.renewMs)).catch((err: Error) => {
        logger.warn({ err }, `Could not leave the cluster cleanly: ${err.message}`)
      })
    }
    await this.availability.disconnect(this.renewMs, timers)
    logger.info({ instanceId: this.instanceId }, `Cluster instance ${this.instanceId} left`)
  }
}

/** An error another instance reported, with the same status and code as where it happened. */
function clusterError (body: AgentSseErrorBody): Error {
  return Object.assign(new Error(body.message), { statusCode: body.statusCode, code: body.code })
}
