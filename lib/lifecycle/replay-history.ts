import type { MetricsSample } from '../adapter.js'

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
   * What a client that last saw `lastEventId` should get: everything after it if
   * the ring still holds it all, else the newest sample and how many were missed.
   * Callers treat ids above `lastEventId` as absent.
   */
  after (lastEventId: number): CatchUp {
    const missing = this.newestId - lastEventId
    if (missing <= 0) return { missed: 0, entries: [] }
    const held = Math.min(this.newestId, this.capacity)
    if (missing <= held) {
      const entries: HistoryEntry[] = []
      for (let id = lastEventId + 1; id <= this.newestId; id++) entries.push(this.ring[id % this.capacity]!)
      return { missed: 0, entries }
    }
    return { missed: missing - 1, entries: [this.newest!] }
  }
}
