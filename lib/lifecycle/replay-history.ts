import type { MetricsSample } from '../adapter.js'
import type { Subscriber } from './subscriber.js'

export interface HistoryEntry {
  readonly eventId: number
  readonly sample: MetricsSample
  /** When the sample arrived (the lifecycle's clock), for the latest-sample-on-subscribe rule. */
  readonly receivedAt: number
}

export interface CatchUp {
  /** Samples after the client's last id that are no longer held (0 when nothing was lost). */
  missed: number
  /** What to send, oldest first. */
  entries: HistoryEntry[]
}

/**
 * Per-agent event ids and the last `capacity` samples, kept for the life of the
 * lifecycle so that ids never restart and a reconnecting client can resume.
 */
export class ReplayHistory {
  private readonly ring: Array<HistoryEntry | undefined>
  private newestId = 0
  /** The id before the oldest of the consecutive ids held (0 unless ids jumped, see `receive`). */
  private baseId = 0

  constructor (private readonly capacity: number) {
    this.ring = new Array(capacity)
  }

  get lastEventId (): number {
    return this.newestId
  }

  get newest (): HistoryEntry | undefined {
    return this.ring[this.newestId % this.capacity]
  }

  append (sample: MetricsSample, receivedAt: number): HistoryEntry {
    const entry = { eventId: ++this.newestId, sample, receivedAt }
    this.ring[entry.eventId % this.capacity] = entry
    return entry
  }

  /**
   * A sample whose id was assigned elsewhere (a cluster owner). Returns null for an id
   * not above the newest (a duplicate). After a jump the ring restarts at the new id:
   * what was skipped is not held, so a client behind it gets a gap rather than wrong samples.
   */
  receive (eventId: number, sample: MetricsSample, receivedAt: number): HistoryEntry | null {
    if (eventId <= this.newestId) return null
    if (eventId !== this.newestId + 1) {
      this.ring.fill(undefined)
      this.baseId = eventId - 1
    }
    this.newestId = eventId
    const entry = { eventId, sample, receivedAt }
    this.ring[eventId % this.capacity] = entry
    return entry
  }

  /**
   * What a client that last saw `lastEventId` should get: everything after it if
   * the ring still holds it all, else the newest sample and how many were missed.
   * Callers treat ids above `lastEventId` as absent.
   */
  after (lastEventId: number): CatchUp {
    const missing = this.newestId - lastEventId
    if (missing <= 0) return { missed: 0, entries: [] }
    const held = Math.min(this.newestId - this.baseId, this.capacity)
    if (missing <= held) {
      const entries: HistoryEntry[] = []
      for (let id = lastEventId + 1; id <= this.newestId; id++) entries.push(this.ring[id % this.capacity]!)
      return { missed: 0, entries }
    }
    return { missed: missing - 1, entries: [this.newest!] }
  }
}

/** Where a joining subscriber's catch-up goes: calls into a subscriber with its exceptions contained. */
interface Notifier {
  notify (subscriber: Subscriber, call: () => void): void
}

/**
 * What a joining subscriber gets first: a replay after its `lastEventId` (or a gap and the
 * newest sample), else the latest sample if the agent is streaming and the sample is younger
 * than the subscriber's interval. True when the latest was sent.
 */
export function catchUp (subscriber: Subscriber, history: ReplayHistory, streaming: boolean, now: number, notifier: Notifier): boolean {
  const lastEventId = subscriber.lastEventId
  if (typeof lastEventId === 'number' && lastEventId >= 0 && lastEventId <= history.lastEventId) {
    const { missed, entries } = history.after(lastEventId)
    if (missed > 0) notifier.notify(subscriber, () => subscriber.gap({ missed, last_event_id: lastEventId }))
    for (const entry of entries) notifier.notify(subscriber, () => subscriber.send(entry.sample, entry.eventId))
    return false
  }
  const newest = history.newest
  if (!streaming || !newest || now - newest.receivedAt >= subscriber.intervalSeconds * 1000) return false
  notifier.notify(subscriber, () => subscriber.send(newest.sample, newest.eventId))
  return true
}
