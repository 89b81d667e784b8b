import type { MetricsSample } from '../adapter.js'
import type { CoordinatedSubscriber, HistoryEntry } from './types.js'

export type { HistoryEntry } from './types.js'

export interface CatchUp {
  /** Samples after the client's last id that are no longer held (0 when nothing was lost). */
  missed: number
  /** What to send, oldest first. */
  entries: HistoryEntry[]
}

// How many of the newest samples' ids a history remembers, per held sample, to count what a
// resuming client missed: exact for clients up to (ID_LOG_FACTOR - 1) × capacity samples behind.
const ID_LOG_FACTOR = 4

/**
 * One agent's newest `capacity` samples, for Last-Event-ID resume and the latest sample on join.
 * Event ids are assigned by the caller (one sequence shared by every agent of the process,
 * or the cluster's): they increase but are not consecutive per agent, so the history also
 * logs the ids of a few more samples than it holds, to count what a resuming client missed.
 */
export class ReplayHistory {
  private readonly ring: Array<HistoryEntry | undefined>
  private readonly idLog: Float64Array
  /** Samples appended so far; the ring and the id log are indexed by it. */
  private appended = 0

  constructor (private readonly capacity: number) {
    this.ring = new Array(capacity)
    this.idLog = new Float64Array(capacity * ID_LOG_FACTOR)
  }

  get lastEventId (): number {
    return this.newest?.eventId ?? 0
  }

  get newest (): HistoryEntry | undefined {
    return this.appended === 0 ? undefined : this.ring[(this.appended - 1) % this.capacity]
  }

  /** Records a sample under an id above every id it holds; returns null (and keeps nothing) for one that is not. */
  append (eventId: number, sample: MetricsSample, json: string, receivedAt: number): HistoryEntry | null {
    if (eventId <= this.lastEventId) return null
    const entry = { eventId, sample, json, receivedAt }
    this.ring[this.appended % this.capacity] = entry
    this.idLog[this.appended % this.idLog.length] = eventId
    this.appended++
    return entry
  }

  /**
   * What a client that last saw `lastEventId` should get: every held sample after it if none
   * after it was dropped, else the newest sample and how many were dropped (counted over the
   * id log: a lower bound for a client further behind than the log reaches).
   */
  after (lastEventId: number): CatchUp {
    if (this.lastEventId <= lastEventId) return { missed: 0, entries: [] }
    const held = Math.min(this.appended, this.capacity)
    const logged = Math.min(this.appended, this.idLog.length)
    let dropped = 0
    // Dropped samples, newest first, while their ids are after the client's.
    for (let index = this.appended - held - 1; index >= this.appended - logged; index--) {
      if (this.idLog[index % this.idLog.length]! <= lastEventId) break
      dropped++
    }
    const entries: HistoryEntry[] = []
    for (let index = this.appended - held; index < this.appended; index++) {
      const entry = this.ring[index % this.capacity]!
      if (entry.eventId > lastEventId) entries.push(entry)
    }
    if (dropped === 0) return { missed: 0, entries }
    // A hole in the replay: only the newest is sent, so every other sample after the client's id is missed.
    return { missed: dropped + entries.length - 1, entries: [this.newest!] }
  }
}

/** Where a joining subscriber's catch-up goes: calls into a subscriber with its exceptions contained. */
interface Notifier {
  notify (subscriber: CoordinatedSubscriber, call: () => void): void
}

/**
 * What a joining subscriber gets first: a replay after its `lastEventId` (or a gap and the
 * newest sample), else the latest sample if the agent is streaming and the sample is younger
 * than the subscriber's interval. True when the latest was sent.
 */
export function catchUp (subscriber: CoordinatedSubscriber, history: ReplayHistory, newestIssuedId: number, streaming: boolean, now: number, notifier: Notifier): boolean {
  const lastEventId = subscriber.lastEventId
  // An id above every id issued is not one of ours (another server's, or made up): treated as absent.
  if (typeof lastEventId === 'number' && lastEventId >= 0 && lastEventId <= newestIssuedId) {
    const { missed, entries } = history.after(lastEventId)
    if (missed > 0) notifier.notify(subscriber, () => subscriber.gap({ missed, lastEventId }))
    for (const entry of entries) notifier.notify(subscriber, () => subscriber.send(entry))
    return false
  }
  const newest = history.newest
  if (!streaming || !newest || now - newest.receivedAt >= subscriber.intervalSeconds * 1000) return false
  notifier.notify(subscriber, () => subscriber.send(newest))
  return true
}
