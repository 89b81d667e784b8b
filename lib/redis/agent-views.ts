import { parseDemand, parseInfo, type InstanceDemand, type StreamInfo } from './records.js'

/** The other instances' demand for one agent, summed. */
export interface PeerDemand {
  clients: number
  /** Every peer subscriber's interval and every peer hold's, unsorted. */
  intervals: number[]
  /** The smallest interval a peer subscriber asks for, or null with no peer subscribers. */
  smallestClientInterval: number | null
  /** The smallest peer hold interval, or null when no peer holds the agent. */
  hold: number | null
  /** The newest event id a peer has seen for the agent. */
  lastEventId: number
}

/** One read of an agent's keys, as a script returns it, validated. */
export interface AgentRead {
  /** Redis's clock when it was read (ms). */
  at: number
  owner: string | null
  info: StreamInfo | null
  demands: Map<string, InstanceDemand>
}

interface AgentView {
  /** Redis's clock of the read the owner and info come from. */
  infoAt: number
  owner: string | null
  info: StreamInfo | null
  /** The newest task the owner described (an end names the task it ends, after the stream went idle too). */
  lastTask: string | null
  /** Redis's clock of the read or message the peers' demand comes from. */
  demandAt: number
  peers: PeerDemand
}

const noDemand: PeerDemand = { clients: 0, intervals: [], smallestClientInterval: null, hold: null, lastEventId: 0 }

/**
 * What one instance knows of the agents it tracks (those it has subscribers or a hold of, owns, or was asked
 * about lately): each agent's owner, the owner's description of the stream, and the other instances' demand.
 * Replies of two connections (commands, pub/sub) may arrive out of order: every read and every owner's message
 * carries Redis's clock, and an older word on the owner never replaces a newer one.
 */
export class AgentViews {
  private readonly views = new Map<string, AgentView>()

  constructor (private readonly self: string) {}

  has (agentId: string): boolean {
    return this.views.has(agentId)
  }

  tracked (): string[] {
    return [...this.views.keys()]
  }

  forget (agentId: string): void {
    this.views.delete(agentId)
  }

  /**
   * Applies a read of the command connection: its owner and description only if no newer message of the owner
   * came since, its demand only if no newer demand change did (they arrive on the subscriber connection).
   */
  apply (agentId: string, read: AgentRead): void {
    const view = this.view(agentId)
    if (read.at >= view.infoAt) {
      view.infoAt = read.at
      view.owner = read.owner
      view.info = read.info !== null && read.info.o === read.owner ? read.info : null
      if (view.info?.t) view.lastTask = view.info.t
    }
    this.applyDemand(agentId, read.at, read.demands)
  }

  /** The agent's demand as Redis had it at `at` (its clock), unless a newer one was applied. */
  applyDemand (agentId: string, at: number, demands: Map<string, InstanceDemand>): void {
    const view = this.view(agentId)
    if (at < view.demandAt) return
    view.demandAt = at
    view.peers = sum(demands, this.self)
  }

  /** The owner's word on its stream, from the agent's channel. */
  applyInfo (agentId: string, at: number, info: StreamInfo): void {
    const view = this.views.get(agentId)
    if (!view || at < view.infoAt) return
    view.infoAt = at
    if (info.s === 'idle') {
      // A release: the lease is free (unless a newer read says who took it).
      if (view.owner === info.o) {
        view.owner = null
        view.info = null
      }
      return
    }
    view.owner = info.o
    view.info = info
    if (info.t !== null) view.lastTask = info.t
  }

  lastTask (agentId: string): string | null {
    return this.views.get(agentId)?.lastTask ?? null
  }

  peerDemand (agentId: string): PeerDemand {
    return this.views.get(agentId)?.peers ?? noDemand
  }

  owner (agentId: string): string | null {
    return this.views.get(agentId)?.owner ?? null
  }

  /** The owner's description of the stream, or null (no owner, or it has not described it yet). */
  info (agentId: string): StreamInfo | null {
    return this.views.get(agentId)?.info ?? null
  }

  /** Tracked agents a peer owns. */
  ownedByPeers (): string[] {
    const agents: string[] = []
    for (const [agentId, view] of this.views) if (view.owner !== null && view.owner !== this.self) agents.push(agentId)
    return agents
  }

  /** Tracked agents whose owners described this task id (task ids are only unique per agent). */
  agentsOfTask (taskId: string): string[] {
    const agents: string[] = []
    for (const [agentId, view] of this.views) if (view.info?.t === taskId) agents.push(agentId)
    return agents
  }

  private view (agentId: string): AgentView {
    let view = this.views.get(agentId)
    if (!view) {
      view = { infoAt: 0, owner: null, info: null, lastTask: null, demandAt: 0, peers: noDemand }
      this.views.set(agentId, view)
    }
    return view
  }
}

/**
 * A script's reply for one agent ([owner, info, [instanceId, value, ...]]) at Redis time `at`, validated:
 * records that do not pass are left out and reported through `dropped`.
 */
export function parseAgentRead (at: number, owner: unknown, info: unknown, fields: unknown, dropped: (what: string) => void): AgentRead {
  const demands = new Map<string, InstanceDemand>()
  if (Array.isArray(fields)) {
    for (let index = 0; index + 1 < fields.length; index += 2) {
      const demand = parseDemand(fields[index + 1])
      if (demand === null) dropped(`the demand of instance ${String(fields[index])}`)
      else demands.set(String(fields[index]), demand)
    }
  }
  const parsedInfo = info === null || info === undefined ? null : parseInfo(info)
  if (parsedInfo === null && typeof info === 'string') dropped('the stream description')
  return { at, owner: typeof owner === 'string' ? owner : null, info: parsedInfo, demands }
}

function sum (demands: Map<string, InstanceDemand>, self: string): PeerDemand {
  const peers: PeerDemand = { clients: 0, intervals: [], smallestClientInterval: null, hold: null, lastEventId: 0 }
  for (const [instanceId, demand] of demands) {
    if (instanceId === self) continue
    peers.clients += demand.c
    if (demand.e > peers.lastEventId) peers.lastEventId = demand.e
    for (const [interval, count] of demand.i) {
      for (let i = 0; i < count; i++) peers.intervals.push(interval)
      if (peers.smallestClientInterval === null || interval < peers.smallestClientInterval) peers.smallestClientInterval = interval
    }
    if (demand.h !== null) {
      peers.intervals.push(demand.h)
      if (peers.hold === null || demand.h < peers.hold) peers.hold = demand.h
    }
  }
  return peers
}
