import { withTimeout } from '../lifecycle/adapter-call.js'
import type { LifecycleTimers } from '../lifecycle/types.js'
import type { AgentRead, AgentViews } from './agent-views.js'
import { noAnswer, type Availability } from './availability.js'
import type { DemandWriter } from './demand-writer.js'
import { afterPendingIo, type LeaseDeadline } from './lease-deadline.js'
import type { Ownership } from './ownership.js'
import type { Renewal, RedisStore } from './store.js'

/** What the renewal needs from the rest of the instance. */
export interface RenewalHooks {
  /** Every agent this instance follows or was asked about lately: each is renewed and read back. */
  agents (): Set<string>
  /** This instance's demand record for the agent, '' for none. */
  record (agentId: string): string
  /** A read of the agent came back. */
  apply (agentId: string, read: AgentRead): void
  /** Every agent of the renewal is read back and applied. */
  renewed (): void
  /** Taking over an agent whose lease the renewal took threw (a bug: it is logged). */
  acquireFailed (err: Error): void
  closing (): boolean
}

/**
 * One script call per renewal period (leaseMs/3) that renews this instance's leases and demand records and reads
 * back the agents it follows; the only traffic of an idle instance. Its answer also says whether Redis is
 * reachable, and which leases were lost or taken.
 */
export class RenewalLoop {
  private tickTimer: unknown = null
  private renewing: Promise<void> | null = null
  private scheduled = false

  constructor (
    private readonly store: RedisStore,
    private readonly availability: Availability,
    private readonly ownership: Ownership,
    private readonly demandRecords: DemandWriter,
    private readonly views: AgentViews,
    private readonly deadline: LeaseDeadline,
    private readonly timers: LifecycleTimers,
    private readonly now: () => number,
    private readonly renewMs: number,
    private readonly leaseMs: number,
    private readonly hooks: RenewalHooks
  ) {}

  /** Renews every period from now on. */
  start (): void {
    this.tickTimer = this.timers.setTimeout(() => {
      this.tickTimer = null
      if (this.hooks.closing()) return
      this.schedule()
      this.start()
    }, this.renewMs)
  }

  /**
   * No renewal after this one. Resolves once a renewal already sent is answered: it may have written this
   * instance's first record for an agent, which the instance must know of to take it out when it leaves.
   */
  stop (): Promise<void> {
    if (this.tickTimer !== null) this.timers.clearTimeout(this.tickTimer)
    return this.renewing?.catch(() => {}) ?? Promise.resolve()
  }

  /** Renews on the next turn of the event loop (one renewal at a time). */
  schedule (): void {
    if (this.hooks.closing() || this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      if (this.renewing || this.hooks.closing()) return
      this.renewing = this.renew().finally(() => { this.renewing = null })
    })
  }

  async renew (): Promise<void> {
    if (!this.availability.connected) {
      this.availability.down('Redis is not reachable')
      return
    }
    const sentAt = this.now()
    // A renewal sent leaseMs after the last one must not revive leases that may have passed to others meanwhile.
    this.deadline.check(sentAt)
    const renewals = this.renewals()
    const streaming = [...this.ownership.allLive()].filter((own) => own.stream.state !== 'idle').map((own) => own.agentId)
    let renewed
    try {
      renewed = await withTimeout(this.store.renew(renewals, streaming), this.leaseMs, afterPendingIo(this.timers), noAnswer(this.leaseMs))
    } catch (err) {
      this.availability.down(`Redis did not answer: ${(err as Error).message}`)
      return
    }
    this.availability.up()
    const taken: string[] = []
    for (const { agentId, demand, mode } of renewals) {
      const result = renewed.get(agentId)!
      this.demandRecords.renewed(agentId, demand)
      // Only a lease this renewal was sent to renew can be lost here: a demand change may have taken the agent's
      // lease for this instance since the renewal left (then Redis names this instance as the owner, outcome 0).
      if (result.outcome === 0 && mode === 'o') this.ownership.leaseLost(agentId, 'another instance holds its lease')
      if (result.outcome === 1 || result.outcome === 2) this.ownership.renewed(agentId, sentAt)
      // Redis lost the lease (and so the stream's description and task record): describe it again.
      if (result.outcome === 2 || (result.outcome === 1 && result.read.info === null)) this.ownership.describe(agentId)
      this.hooks.apply(agentId, result.read)
      if (result.outcome === 3) taken.push(agentId)
    }
    this.deadline.arm()
    this.hooks.renewed()
    // Taking an agent over is two round trips of its own: never awaited here, or a renewal that took a
    // thousand leases one after the other would hold up the next renewal past leaseMs and lose them all.
    for (const agentId of taken) this.ownership.acquired(agentId, sentAt).catch(this.hooks.acquireFailed)
  }

  private renewals (): Renewal[] {
    const agents = this.hooks.agents()
    // Views of agents this instance no longer follows are dropped here, once a period.
    for (const agentId of this.views.tracked()) if (!agents.has(agentId)) this.views.forget(agentId)
    const renewals: Renewal[] = []
    for (const agentId of agents) {
      const demand = this.hooks.record(agentId)
      const mode = this.ownership.live(agentId) ? 'o' : demand !== '' || this.demandRecords.has(agentId) ? 'w' : 'q'
      renewals.push({ agentId, mode, demand })
    }
    return renewals
  }
}
