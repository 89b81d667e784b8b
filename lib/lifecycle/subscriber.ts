import type { CoordinatedSubscriber, GapInfo, HistoryEntry, SubscribeOptions } from './types.js'

/**
 * One subscriber and its down-sampling state. A subscriber whose interval is k times
 * the stream's gets the first sample after it joins and then every k-th
 * (k = max(1, round(subscriber / stream))): a counter, no timers, no allocation per sample.
 */
export class Subscriber implements CoordinatedSubscriber {
  readonly intervalSeconds: number
  private every = 1
  private skip = 0
  /** The newest event id sent, so that nothing reaches this subscriber twice (for example one joining mid fan-out). */
  private sentEventId = 0

  constructor (private readonly options: SubscribeOptions) {
    this.intervalSeconds = options.intervalSeconds
  }

  get lastEventId (): number | null | undefined {
    return this.options.lastEventId
  }

  /** The stream now runs at `streamIntervalSeconds`. */
  tune (streamIntervalSeconds: number): void {
    this.every = Math.max(1, Math.round(this.intervalSeconds / streamIntervalSeconds))
    if (this.skip >= this.every) this.skip = this.every - 1
  }

  /** A live sample: delivered or skipped by the down-sampling. */
  offer (entry: HistoryEntry): void {
    if (entry.eventId <= this.sentEventId) return
    if (this.skip > 0) {
      this.skip--
      return
    }
    this.skip = this.every - 1
    this.sentEventId = entry.eventId
    this.options.onSample(entry.sample, entry.eventId, entry.json)
  }

  /** A sample sent on joining (replay or the latest): outside the down-sampling. */
  send (entry: HistoryEntry): void {
    this.sentEventId = entry.eventId
    this.options.onSample(entry.sample, entry.eventId, entry.json)
  }

  /** The latest sample was sent on joining: it counts as the first one, the next comes k samples later. */
  countAsFirst (): void {
    this.skip = this.every - 1
  }

  gap (info: GapInfo): void {
    this.options.onGap?.(info)
  }

  end (reason: string): void {
    this.options.onEnd?.(reason)
  }

  fail (err: Error): void {
    this.options.onError?.(err)
  }
}
