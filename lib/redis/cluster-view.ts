import type { ClusterRead, InstanceDemand, OwnedStreamInfo } from './store.js'

/** The other instances' demand for one agent, summed. */
export interface PeerDemand {
  clients: number
  /** Every peer client's interval and every peer hold's, unsorted. */
  intervals: number[]
  /** The smallest interval a peer client asks for, or null with no peer clients. */
  smallestClientInterval: number | null
  /** The smallest peer hold interval, or null when no peer holds the agent. */
  hold: number | null
  /** The newest event id a peer has seen for the agent. */
  lastEventId: number
}

const noDemand: PeerDemand = { clients: 0, intervals: [], smallestClientInterval: null, hold: null, lastEventId: 0 }

/**
 * The last read of the cluster, as seen by one instance: its peers' demand per agent and
 * every agent's owner. This instance's own part is never taken from here (it is live).
 */
export class ClusterView {
  private peers = new Map<string, PeerDemand>()
  private owners = new Map<string, string>()
  private infos = new Map<string, OwnedStreamInfo>()

  constructor (private readonly self: string) {}

  update ({ snapshots, owners }: ClusterRead): void {
    const peers = new Map<string, PeerDemand>()
    const infos = new Map<string, OwnedStreamInfo>()
    for (const [instanceId, snapshot] of snapshots) {
      for (const [agentId, info] of Object.entries(snapshot.owned)) {
        // Only the lease holder's word counts: a stale snapshot may still claim a stream it gave up.
        if (owners.get(agentId) === instanceId) infos.set(agentId, info)
      }
      if (instanceId === this.self) continue
      for (const [agentId, demand] of Object.entries(snapshot.agents)) add(peers, agentId, demand)
    }
    this.peers = peers
    this.owners = owners
    this.infos = infos
  }

  peerDemand (agentId: string): PeerDemand {
    return this.peers.get(agentId) ?? noDemand
  }

  owner (agentId: string): string | null {
    return this.owners.get(agentId) ?? null
  }

  /** The owner's published stream, or null (no owner, or it has not published yet). */
  info (agentId: string): OwnedStreamInfo | null {
    return this.infos.get(agentId) ?? null
  }

  /** Agents some peer owns. */
  ownedByPeers (): string[] {
    const agents: string[] = []
    for (const [agentId, owner] of this.owners) if (owner !== this.self) agents.push(agentId)
    return agents
  }

  /** The agents whose owners published this task id (task ids are only unique per agent). */
  agentsOfTask (taskId: string): string[] {
    const agents: string[] = []
    for (const [agentId, info] of this.infos) if (info.task_id === taskId) agents.push(agentId)
    return agents
  }
}

function add (peers: Map<string, PeerDemand>, agentId: string, demand: InstanceDemand): void {
  let sum = peers.get(agentId)
  if (!sum) {
    sum = { clients: 0, intervals: [], smallestClientInterval: null, hold: null, lastEventId: 0 }
    peers.set(agentId, sum)
  }
  sum.clients += demand.c
  if (Number.isSafeInteger(demand.e) && demand.e > sum.lastEventId) sum.lastEventId = demand.e
  for (const [interval, count] of demand.i) {
    for (let i = 0; i < count; i++) sum.intervals.push(interval)
    if (count > 0 && (sum.smallestClientInterval === null || interval < sum.smallestClientInterval)) sum.smallestClientInterval = interval
  }
  if (demand.h !== null) {
    sum.intervals.push(demand.h)
    if (sum.hold === null || demand.h < sum.hold) sum.hold = demand.h
  }
}
