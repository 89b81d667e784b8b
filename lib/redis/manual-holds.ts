import { FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT, FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE } from '../errors.js'
import { holdEndedError } from '../lifecycle/hold-ended.js'
import type { LifecycleTimers, StreamStatus } from '../lifecycle/types.js'
import type { AgentReads } from './agent-reads.js'
import type { AgentViews } from './agent-views.js'
import type { DemandWriter } from './demand-writer.js'
import { encodeMessage } from './messages.js'
import type { RedisStore } from './store.js'
import { TimedWaits } from './timed-waits.js'

/** What the holds need from the rest of the instance. */
export interface ManualHoldsHooks {
  /** This instance's demand for the agent changed (a hold was set or dropped). */
  changed (agentId: string): void
  status (agentId: string): StreamStatus
  available (): boolean
}

/** How long the holds wait, in ms. */
export interface HoldTimes {
  /** For a stream to become active: a start, and a lease for an owner to die meanwhile. */
  untilActiveMs: number
  /** Between two reads of an agent while its peers drop their holds. */
  renewMs: number
}

/**
 * The manual holds set through this instance (a hold is part of the instance's demand record, so a peer's is in
 * its record), and the manual starts waiting for their stream to be active somewhere in the cluster.
 */
export class ManualHolds {
  private readonly holds = new Map<string, number>()
  /** `hold()` callers waiting for the stream to be active, by agent. */
  private readonly waiters: TimedWaits

  constructor (
    private readonly store: RedisStore,
    private readonly demandRecords: DemandWriter,
    private readonly reads: AgentReads,
    private readonly views: AgentViews,
    private readonly timers: LifecycleTimers,
    private readonly now: () => number,
    private readonly times: HoldTimes,
    private readonly hooks: ManualHoldsHooks
  ) {
    this.waiters = new TimedWaits(timers)
  }

  get size (): number {
    return this.holds.size
  }

  agents (): IterableIterator<string> {
    return this.holds.keys()
  }

  has (agentId: string): boolean {
    return this.holds.has(agentId)
  }

  /** The hold's interval, or null with no hold here. */
  interval (agentId: string): number | null {
    return this.holds.get(agentId) ?? null
  }

  async hold (agentId: string, intervalSeconds: number): Promise<StreamStatus> {
    this.holds.set(agentId, intervalSeconds)
    this.hooks.changed(agentId)
    // In Redis before the answer: a stop sent right after it, to any instance, must find it.
    await this.demandRecords.write()
    // Answered with the stream active as this instance sees it when it answers: the stream can leave 'active'
    // again between the wake-up and the answer (the owner re-tunes by a restart, a newer description arrives).
    while (this.holds.has(agentId) && this.hooks.status(agentId).state !== 'active') {
      try {
        await this.untilActive(agentId)
      } catch (err) {
        // A start that failed (or could not be coordinated) leaves no hold behind, as in a single process.
        if (this.holds.get(agentId) === intervalSeconds && this.hooks.status(agentId).state !== 'active') {
          this.holds.delete(agentId)
          this.hooks.changed(agentId)
        }
        throw err
      }
    }
    // A stop (from any instance) that came in meanwhile ended this hold, as it would reject it in a single process.
    if (!this.holds.has(agentId)) throw holdEndedError(agentId, null)
    return this.hooks.status(agentId)
  }

  async release (agentId: string): Promise<StreamStatus> {
    if (this.holds.delete(agentId)) this.waiters.reject(agentId, holdEndedError(agentId, null))
    this.hooks.changed(agentId)
    // Holds set through other instances are theirs: ask them (they listen on the agent's channel) to drop them.
    try {
      await this.demandRecords.write()
      await this.store.publishToAgent(agentId, encodeMessage({ kind: 'release' }))
    } catch (err) {
      throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE((err as Error).message)
    }
    await this.waitForView(agentId, () => this.views.peerDemand(agentId).hold === null, this.times.renewMs * 2)
    return this.hooks.status(agentId)
  }

  /** A stop on another instance asked every instance to drop its hold on the agent. */
  releasedElsewhere (agentId: string): void {
    if (!this.holds.delete(agentId)) return
    this.waiters.reject(agentId, holdEndedError(agentId, null))
    this.hooks.changed(agentId)
  }

  /** The stream ended for the cluster: the hold goes, and a manual start waiting for it is answered `err`. */
  drop (agentId: string, err: Error): void {
    this.holds.delete(agentId)
    this.waiters.reject(agentId, err)
  }

  /** What the instance knows of the agent changed: answers the manual starts that wait on it, if they are done. */
  check (agentId: string): void {
    if (!this.waiters.has(agentId)) return
    if (!this.holds.has(agentId)) this.waiters.reject(agentId, holdEndedError(agentId, null))
    else if (this.hooks.status(agentId).state === 'active') this.waiters.resolve(agentId, undefined)
  }

  checkAll (): void {
    for (const agentId of this.waiters.keys()) this.check(agentId)
  }

  /** Answers every waiting manual start with `err` (Redis is unreachable); the holds stay. */
  rejectWaiters (err: Error): void {
    this.waiters.rejectAll(err)
  }

  /** Closing: every waiting manual start is answered `err`, and the holds go. */
  close (err: Error): void {
    this.waiters.rejectAll(err)
    this.holds.clear()
  }

  private untilActive (agentId: string): Promise<void> {
    const waitMs = this.times.untilActiveMs
    return this.waiters.wait(agentId, waitMs, () => {
      // Nobody got the stream going in time: the hold is dropped, as after a failed start.
      if (this.holds.delete(agentId)) this.hooks.changed(agentId)
      return new FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT('startMetricsStreaming', agentId, waitMs)
    })
  }

  /** Reads the agent until `done` holds or `timeoutMs` passed (peers answer a message on their own time). */
  private async waitForView (agentId: string, done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = this.now() + timeoutMs
    await this.reads.read(agentId)
    while (!done() && this.now() < deadline && this.hooks.available()) {
      await new Promise((resolve) => this.timers.setTimeout(() => resolve(undefined), Math.min(20, this.times.renewMs)))
      await this.reads.read(agentId)
    }
  }
}
