import type { StatusDemand } from '../lifecycle/stream-status.js'
import type { AgentReads } from './agent-reads.js'
import type { AgentViews } from './agent-views.js'
import type { DemandWriter } from './demand-writer.js'
import type { LocalClients } from './local-clients.js'
import type { ManualHolds } from './manual-holds.js'
import type { ClusterDemand } from './owned-stream.js'
import type { Ownership } from './ownership.js'
import { encodeDemand } from './records.js'

/**
 * This instance's demand for an agent (its clients and its hold) beside the other instances' (as last read): what
 * it writes to Redis, what an owner's state machine follows, what a status counts, and whether this instance
 * follows the agent at all.
 */
export class DemandView {
  constructor (
    private readonly locals: LocalClients,
    private readonly holds: ManualHolds,
    private readonly views: AgentViews,
    private readonly ownership: Ownership,
    private readonly demandRecords: DemandWriter,
    private readonly reads: AgentReads,
    /** Whether this instance listens to the agent's channel (Redis confirmed the subscription). */
    private readonly listens: (agentId: string) => boolean
  ) {}

  /** The cluster's demand, for the owner's state machine. */
  cluster (agentId: string): ClusterDemand {
    const peers = this.views.peerDemand(agentId)
    return {
      clientInterval: smallest(peers.smallestClientInterval, this.locals.smallestInterval(agentId)),
      hold: smallest(peers.hold, this.holds.interval(agentId))
    }
  }

  /** The cluster's demand, as a status counts it. */
  status (agentId: string): StatusDemand {
    const peers = this.views.peerDemand(agentId)
    const hold = this.holds.interval(agentId)
    const requestedIntervals = [...peers.intervals, ...this.locals.intervals(agentId)]
    if (hold !== null) requestedIntervals.push(hold)
    return { subscribers: peers.clients + this.locals.count(agentId), manualHold: hold !== null || peers.hold !== null, requestedIntervals }
  }

  /**
   * This instance's demand record for the agent, '' for none. It counts in the cluster only once this instance
   * listens to the agent's channel: the owner's status then counts a client that gets the next sample, and a
   * first client's stream starts only once its samples can arrive.
   */
  record (agentId: string): string {
    const hold = this.holds.interval(agentId)
    if ((this.locals.count(agentId) === 0 && hold === null) || !this.listens(agentId)) return ''
    return encodeDemand({ ...this.locals.demand(agentId), h: hold })
  }

  /** This instance has clients or a hold of the agent: it listens to the agent's channel. */
  wanted (agentId: string): boolean {
    return this.locals.count(agentId) > 0 || this.holds.has(agentId)
  }

  /** Whether this instance follows the agent (clients, a hold, its stream, a record in Redis). */
  follows (agentId: string): boolean {
    return this.wanted(agentId) || this.ownership.has(agentId) || this.demandRecords.has(agentId)
  }

  /** Whether this instance keeps its view of the agent up to date: it follows it, or was asked about it lately. */
  tracks (agentId: string): boolean {
    return this.follows(agentId) || this.reads.isAsked(agentId)
  }
}

function smallest (a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null) return a
  return Math.min(a, b)
}
