import type { AgentSseErrorBody } from '../errors.js'
import type { LifecycleLogger } from '../lifecycle/types.js'
import type { AgentChannels } from './agent-channels.js'
import { parseAgentRead, type AgentViews } from './agent-views.js'
import type { ClusterKeys } from './keys.js'
import type { LocalClients } from './local-clients.js'
import { decodeInbox, decodeMessage, type AgentMessage, type InboxMessage } from './messages.js'
import type { Ownership } from './ownership.js'
import type { InstanceDemand } from './records.js'
import type { RemoteCancels } from './remote-cancels.js'

/** The agent's demand as a change left it, at Redis's clock `at`. */
export interface DemandChange {
  at: number
  demands: Map<string, InstanceDemand>
}

/** What the messages change beyond the views, the local clients and the cancels. */
export interface IncomingMessagesHooks {
  /** The owner described the agent's stream anew. */
  described (agentId: string): void
  /** The agent's stream ended, or failed, for the whole cluster. */
  ended (agentId: string, reason: string): void
  failed (agentId: string, body: AgentSseErrorBody): void
  /** A stop on some instance: this instance's hold on the agent goes too. */
  released (agentId: string): void
  /**
   * This instance owns the agent and its demand changed: `change` is the agent's demand as the change left it, or
   * null when the message did not carry it (an older instance sent it to the inbox) and it must be read.
   */
  demandChanged (agentId: string, change: DemandChange | null): void
  /** The end or failure the agent's owner last published, as Redis keeps it (null if none). */
  lastEnding (agentId: string): Promise<string | null>
  now (): number
  /** Redis's clock now, as far as this instance can tell (ms). */
  redisNow (): number
}

/**
 * How far ahead of Redis's clock (as this instance reckons it) a demand change's time may be. A newer demand
 * change hides every older read: one forged far in the future would hide them all, and freeze the agent's demand.
 */
const DEMAND_CLOCK_SLACK_MS = 1000

/**
 * What this instance hears on its subscriber connection: on an agent's channel the owner's samples, descriptions,
 * ends and failures, and releases from any instance; on its inbox a demand change (as the owner), a cancel
 * (as the owner) and a cancel's answer. Everything is decoded as untrusted, and what is not for this instance's
 * view of the agent (a forged or late end) is dropped.
 */
export class IncomingMessages {
  private readonly inbox: string
  private readonly channelOf: (agentId: string) => string

  constructor (
    keys: ClusterKeys,
    private readonly instanceId: string,
    private readonly views: AgentViews,
    private readonly ownership: Ownership,
    private readonly locals: LocalClients,
    private readonly cancels: RemoteCancels,
    private readonly logger: LifecycleLogger,
    /** The agent channels (null until the subscriber connection is up). */
    private readonly channels: () => AgentChannels | null,
    private readonly hooks: IncomingMessagesHooks
  ) {
    this.inbox = keys.inbox(instanceId)
    this.channelOf = (agentId) => keys.channel(agentId)
  }

  /** A message on `channel`. */
  receive (channel: string, text: string): void {
    if (channel === this.inbox) {
      const message = decodeInbox(text)
      if (message) this.onInbox(message)
      else this.logger.warn({ channel }, 'Dropped a malformed message on this instance\'s inbox')
      return
    }
    const agentId = this.channels()?.agentOf(channel) ?? null
    if (agentId === null) return
    const message = decodeMessage(text)
    if (message) this.onAgentMessage(agentId, message, text)
    else this.logger.warn({ agentId }, `Dropped a malformed message on the channel of agent ${agentId}`)
  }

  /**
   * The agent's latest sample as Redis keeps it, read once this instance's subscription to the agent's channel
   * was live: a sample published while the subscription was on its way arrives this way (one already here is
   * not sent twice: a history takes only ids above its newest). Only one newer than every sample this instance
   * has received: a fleet connection's ids must keep increasing, and it may have another agent's newer sample.
   */
  catchUp (agentId: string, text: string): void {
    const message = decodeMessage(text)
    if (message?.kind !== 'sample') {
      this.logger.warn({ agentId }, `Dropped the latest sample of agent ${agentId} read from Redis: it is not valid`)
      return
    }
    if (message.eventId <= this.locals.highestEventId || this.channels()?.agentOf(this.channelOf(agentId)) !== agentId) return
    this.onAgentMessage(agentId, message, text)
  }

  private onAgentMessage (agentId: string, message: AgentMessage, text: string): void {
    switch (message.kind) {
      case 'sample': return this.locals.receive(agentId, message.eventId, message.intervalSeconds, message.json, this.hooks.now())
      case 'info':
        if (message.info.o === this.instanceId) return
        this.views.applyInfo(agentId, message.at, message.info)
        this.hooks.described(agentId)
        return
      case 'end':
        if (this.ownership.live(agentId)) return // this instance applied its own end already
        if (this.isLiveTask(agentId, message.taskId)) this.hooks.ended(agentId, message.reason)
        else this.checkEnding(agentId, text, 'end', message.taskId, () => this.hooks.ended(agentId, message.reason))
        return
      case 'fail':
        if (this.ownership.live(agentId)) return
        if (this.isLiveTask(agentId, message.taskId)) this.hooks.failed(agentId, message.error)
        else this.checkEnding(agentId, text, 'failure', message.taskId, () => this.hooks.failed(agentId, message.error))
        return
      case 'release':
        this.hooks.released(agentId)
        return
      case 'demand': {
        if (this.fromTheFuture(agentId, message.at)) return
        const demands = parseAgentRead(message.at, null, null, message.fields, (what) => this.droppedDemand(agentId, what)).demands
        // The owner follows it; every other instance that listens shows it in its status at once.
        if (this.ownership.live(agentId)) this.hooks.demandChanged(agentId, { at: message.at, demands })
        else this.views.applyDemand(agentId, message.at, demands)
      }
    }
  }

  /** Whether an end or failure names the agent's live task (or a start that has no task yet). */
  private isLiveTask (agentId: string, taskId: string | null): boolean {
    const info = this.views.info(agentId)
    if (taskId === null) return info === null || info.s === 'starting'
    return info?.t === taskId || this.views.lastTask(agentId) === taskId
  }

  /**
   * An end or failure of a task this instance never heard of: it subscribed to the agent while the task ran, after
   * the owner described it. The owner keeps its last end or failure in Redis (only the lease holder can write it):
   * the same message there is the real one, anything else is forged or stale and dropped.
   */
  private checkEnding (agentId: string, text: string, what: string, taskId: string | null, apply: () => void): void {
    this.hooks.lastEnding(agentId).then((recorded) => {
      const info = this.views.info(agentId)
      // A task started since (this instance heard of it meanwhile) is not the one that ended.
      const newerTask = info !== null && info.t !== null && info.t !== taskId
      if (recorded === text && !newerTask) apply()
      else this.droppedForeign(agentId, what, taskId)
    }, (err: Error) => {
      this.logger.warn({ agentId, taskId, err }, `Could not check an ${what} message of agent ${agentId} for task ${String(taskId)} against Redis: ${err.message}; dropped`)
    })
  }

  private droppedForeign (agentId: string, what: string, taskId: string | null): void {
    this.logger.warn({ agentId, taskId }, `Dropped an ${what} message of agent ${agentId} for task ${String(taskId)}, which is not its live task`)
  }

  private fromTheFuture (agentId: string, at: number): boolean {
    if (at <= this.hooks.redisNow() + DEMAND_CLOCK_SLACK_MS) return false
    this.logger.warn({ agentId, at }, `Dropped a demand change of agent ${agentId} from the future (Redis's clock is not there yet)`)
    return true
  }

  private droppedDemand (agentId: string, what: string): void {
    this.logger.warn({ agentId }, `Dropped ${what} of agent ${agentId} sent by a demand change: it is not valid`)
  }

  private onInbox (message: InboxMessage): void {
    if (message.op === 'demand') {
      // Only the owner is told; anything else is stale or foreign.
      if (!this.ownership.live(message.agentId)) return
      const { agentId, at, fields } = message
      if (at !== undefined && this.fromTheFuture(agentId, at)) return
      this.hooks.demandChanged(agentId, at === undefined || fields === undefined ? null : { at, demands: parseAgentRead(at, null, null, fields, (what) => this.droppedDemand(agentId, what)).demands })
      return
    }
    if (message.op === 'cancelled') this.cancels.answered(message.requestId, message.found)
    else this.cancels.answer(message, this.ownership)
  }
}
