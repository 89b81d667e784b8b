import type { MetricsSample } from '../adapter.js'
import { Audience } from '../lifecycle/audience.js'
import { HistoryStore } from '../lifecycle/history-store.js'
import { catchUp, ReplayHistory } from '../lifecycle/replay-history.js'
import type { CoordinatedSubscriber, LifecycleLogger, LifecycleTimers } from '../lifecycle/types.js'
import type { InstanceDemand } from './records.js'

/** This instance's SSE clients of one agent. */
interface LocalAgent {
  audience: Audience
  /** The stream interval the audience's down-sampling is tuned to. */
  tunedTo: number | null
}

// What a subscriber to an agent that never streamed catches up on: nothing (and nothing is kept for it).
const noHistory = new ReplayHistory(1)

/**
 * One cluster instance's own SSE clients, per agent, and the samples it received for them:
 * the local half of the cluster (the demand it publishes, and the fan-out of the owner's samples).
 */
export class LocalClients {
  private readonly agents = new Map<string, LocalAgent>()
  // Kept while the agent has clients here, then bounded as in a single process (see HistoryStore):
  // replay survives a change of owner, and an agent watched elsewhere only keeps its newest samples for a while.
  private readonly histories: HistoryStore
  private newestReceived = 0

  constructor (replayBufferSize: number, private readonly logger: LifecycleLogger, timers: LifecycleTimers, now: () => number) {
    this.histories = new HistoryStore(replayBufferSize, timers, now)
  }

  /** Agents with at least one client here. */
  watched (): string[] {
    return [...this.agents.keys()]
  }

  count (agentId: string): number {
    return this.agents.get(agentId)?.audience.size ?? 0
  }

  intervals (agentId: string): number[] {
    return this.agents.get(agentId)?.audience.intervals() ?? []
  }

  /** The smallest interval a client here asks for, or null with none. */
  smallestInterval (agentId: string): number | null {
    const local = this.agents.get(agentId)
    return local && local.audience.size > 0 ? local.audience.smallestInterval() : null
  }

  lastEventId (agentId: string): number {
    return this.histories.get(agentId)?.lastEventId ?? 0
  }

  /** The newest event id received for any agent (ids are one sequence for the whole cluster). */
  get highestEventId (): number {
    return this.newestReceived
  }

  /** This instance's part of the cluster's demand, for its snapshot. */
  demand (agentId: string): InstanceDemand {
    const local = this.agents.get(agentId)
    return { c: local?.audience.size ?? 0, i: local?.audience.intervalCounts() ?? [], h: null, e: this.newestReceived }
  }

  /**
   * Adds a client after its catch-up (replay, or the latest sample while `streaming`), tuned to the
   * stream's interval when known. Returns its removal, which is true if it was still here.
   */
  add (agentId: string, subscriber: CoordinatedSubscriber, streaming: boolean, streamInterval: number | null, now: number): () => boolean {
    let local = this.agents.get(agentId)
    if (!local) {
      local = { audience: new Audience(agentId, this.logger), tunedTo: null }
      this.agents.set(agentId, local)
    }
    const history = this.histories.get(agentId) === undefined ? noHistory : this.histories.use(agentId)
    const sentLatest = catchUp(subscriber, history, this.newestReceived, streaming, now, local.audience)
    const tuneTo = local.tunedTo ?? streamInterval
    if (tuneTo) subscriber.tune(tuneTo)
    if (sentLatest) subscriber.countAsFirst()
    local.audience.add(subscriber)
    const joined = local
    return () => {
      if (!joined.audience.remove(subscriber)) return false
      if (joined.audience.size === 0 && this.agents.get(agentId) === joined) {
        this.agents.delete(agentId)
        this.histories.idle(agentId)
      }
      return true
    }
  }

  /** A sample the owner published (its JSON text as the owner serialised it): kept, and fanned out here. */
  receive (agentId: string, eventId: number, intervalSeconds: number, json: string, now: number): void {
    // Redis content is untrusted: only a JSON object is a sample (anything else is dropped, never fanned out).
    let sample: unknown
    try {
      sample = JSON.parse(json)
    } catch {
      sample = null
    }
    if (typeof sample !== 'object' || sample === null || Array.isArray(sample)) {
      this.logger.warn({ agentId, eventId }, `Dropped a published sample of agent ${agentId} that is not a JSON object`)
      return
    }
    if (eventId > this.newestReceived) this.newestReceived = eventId
    const entry = this.histories.use(agentId).append(eventId, sample as MetricsSample, json, now)
    const local = this.agents.get(agentId)
    if (!local) {
      // Kept for a client that joins later (the latest sample on join), as an idle agent's history is.
      this.histories.idle(agentId)
      return
    }
    if (entry === null) return
    if (local.tunedTo !== intervalSeconds) {
      local.tunedTo = intervalSeconds
      local.audience.tune(intervalSeconds)
    }
    local.audience.offer(entry)
  }

  /** Removes the agent's clients, then tells each why. */
  endAll (agentId: string, notify: (subscriber: CoordinatedSubscriber) => void): void {
    const local = this.agents.get(agentId)
    this.agents.delete(agentId)
    this.histories.idle(agentId)
    local?.audience.endAll(notify)
  }

  /** Removes every client of every agent, then tells each why. */
  endEverything (notify: (subscriber: CoordinatedSubscriber) => void): void {
    for (const agentId of this.watched()) this.endAll(agentId, notify)
  }
}
