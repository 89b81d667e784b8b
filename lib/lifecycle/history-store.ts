import { ReplayHistory } from './replay-history.js'
import type { LifecycleTimers } from './types.js'

/** How long the history of an agent nobody streams is kept for a client that comes back. */
export const IDLE_HISTORY_TTL_MS = 60_000
/** At most this many idle agents' histories are kept; past it the longest idle goes first. */
export const MAX_IDLE_HISTORIES = 1000

/**
 * Per-agent replay histories with a bound: an agent's history lives while the agent has a
 * stream or subscribers, then at most IDLE_HISTORY_TTL_MS, and at most MAX_IDLE_HISTORIES
 * idle ones are kept at once. Agent ids come from clients, so without this bound every id
 * ever asked for would keep its history for the life of the process. Forgetting one is safe:
 * event ids come from one sequence shared by all agents, so a new history never reuses an id.
 */
export class HistoryStore {
  private readonly histories = new Map<string, ReplayHistory>()
  /** Idle agents and when they became idle, oldest first (a Map keeps insertion order). */
  private readonly idleSince = new Map<string, number>()
  private sweepTimer: unknown = null

  constructor (
    private readonly capacity: number,
    private readonly timers: LifecycleTimers,
    private readonly now: () => number
  ) {}

  get size (): number {
    return this.histories.size
  }

  get (agentId: string): ReplayHistory | undefined {
    return this.histories.get(agentId)
  }

  /** The agent's history, created if needed; it is kept until `idle()`. */
  use (agentId: string): ReplayHistory {
    this.idleSince.delete(agentId)
    let history = this.histories.get(agentId)
    if (!history) {
      history = new ReplayHistory(this.capacity)
      this.histories.set(agentId, history)
    }
    return history
  }

  /** Nothing streams the agent any more: its history expires unless it is used again first. */
  idle (agentId: string): void {
    const history = this.histories.get(agentId)
    if (!history) return
    // An agent that never produced a sample leaves nothing behind.
    if (history.lastEventId === 0) {
      this.histories.delete(agentId)
      return
    }
    this.idleSince.delete(agentId)
    this.idleSince.set(agentId, this.now())
    for (const oldest of this.idleSince.keys()) {
      if (this.idleSince.size <= MAX_IDLE_HISTORIES) break
      this.forget(oldest)
    }
    this.scheduleSweep()
  }

  /** Forgets every history (the lifecycle closed). */
  clear (): void {
    if (this.sweepTimer !== null) this.timers.clearTimeout(this.sweepTimer)
    this.sweepTimer = null
    this.histories.clear()
    this.idleSince.clear()
  }

  private forget (agentId: string): void {
    this.idleSince.delete(agentId)
    this.histories.delete(agentId)
  }

  // One timer for the whole store, armed for the oldest idle history only.
  private scheduleSweep (): void {
    if (this.sweepTimer !== null) return
    const oldest = this.idleSince.values().next()
    if (oldest.done === true) return
    const dueInMs = Math.max(0, oldest.value + IDLE_HISTORY_TTL_MS - this.now())
    this.sweepTimer = this.timers.setTimeout(() => {
      this.sweepTimer = null
      const cutoff = this.now() - IDLE_HISTORY_TTL_MS
      for (const [agentId, since] of this.idleSince) {
        if (since > cutoff) break
        this.forget(agentId)
      }
      this.scheduleSweep()
    }, dueInMs)
  }
}
