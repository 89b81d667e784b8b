import type { LifecycleLogger } from '../lifecycle/types.js'
import type { AgentRead } from './agent-views.js'
import type { RedisStore } from './store.js'

/** What the reads need from the instance. */
export interface AgentReadsHooks {
  /** Whether the instance follows the agent for another reason (subscribers, a hold, ownership, a record). */
  follows (agentId: string): boolean
  /** A read came back. */
  apply (agentId: string, read: AgentRead): void
  available (): boolean
  closing (): boolean
}

/**
 * Reads of single agents, on demand: for a status, a cancel or a hold's release, and for the agents this instance
 * is asked about without following them otherwise (kept up to date by the renewal for ten renewal periods after
 * the last question). Also the index of streamed agents (GET /streams), read at most twice a renewal period.
 */
export class AgentReads {
  /** Agents asked about, and when. */
  private readonly asked = new Map<string, number>()
  private readonly inFlight = new Map<string, Promise<void>>()
  private streamed: string[] = []
  private streamedReadAt = 0
  private streamedRead: Promise<void> | null = null

  constructor (
    private readonly store: RedisStore,
    private readonly logger: LifecycleLogger,
    private readonly now: () => number,
    private readonly renewMs: number,
    private readonly hooks: AgentReadsHooks
  ) {}

  /** Reads the agent now (its owner, description, the cluster's demand); one read in flight per agent. */
  read (agentId: string): Promise<void> {
    let read = this.inFlight.get(agentId)
    if (!read) {
      read = this.store.readAgent(agentId).then(
        (result) => this.hooks.apply(agentId, result),
        (err: Error) => this.logger.warn({ agentId, err }, `Could not read agent ${agentId}: ${err.message}`)
      ).finally(() => this.inFlight.delete(agentId))
      this.inFlight.set(agentId, read)
    }
    return read
  }

  /** The instance was asked about the agent: followed (and read now, if it was not) for a while. */
  askedAbout (agentId: string): void {
    const known = this.hooks.follows(agentId) || this.asked.has(agentId)
    this.asked.set(agentId, this.now())
    if (!known && this.hooks.available() && !this.hooks.closing()) this.read(agentId).catch(() => {})
  }

  isAsked (agentId: string): boolean {
    return this.asked.has(agentId)
  }

  /** The agents asked about lately (older questions are forgotten here). */
  recentlyAsked (): string[] {
    const now = this.now()
    for (const [agentId, at] of this.asked) if (now - at > this.renewMs * 10) this.asked.delete(agentId)
    return [...this.asked.keys()]
  }

  /**
   * The agents some owner streams, as last read (the index is read again in the background, and the agents in it
   * that this instance does not follow are read: they show from the next call on).
   */
  streamedAnywhere (): string[] {
    this.readStreamed().catch(() => {})
    return this.streamed
  }

  /** Reads the index of streamed agents, unless it was read (or is being read) in the last half renewal period. */
  readStreamed (): Promise<void> {
    const now = this.now()
    if ((now - this.streamedReadAt < this.renewMs / 2 && this.streamedRead !== null) || !this.hooks.available()) {
      return this.streamedRead ?? Promise.resolve()
    }
    this.streamedReadAt = now
    this.streamedRead = this.store.streamingAgents().then((agents) => {
      this.streamed = agents
      for (const agentId of agents) if (!this.hooks.follows(agentId)) this.askedAbout(agentId)
    }, () => {})
    return this.streamedRead
  }
}
