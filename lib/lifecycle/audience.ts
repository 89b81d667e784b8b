import type { HistoryEntry } from './replay-history.js'
import type { CoordinatedSubscriber, LifecycleLogger } from './types.js'

/**
 * Who wants one agent's stream: its subscribers and the manual hold. The demand side of
 * the agent's state machine: it counts, picks the interval, and fans samples out,
 * isolating the subscribers from each other's exceptions.
 */
export class Audience {
  /** The manual hold's interval, or null when there is no hold. */
  holdIntervalSeconds: number | null = null
  private readonly subscribers = new Set<CoordinatedSubscriber>()
  // Subscribers per requested interval: every join re-checks the smallest, so it must not cost O(subscribers).
  private readonly counts = new Map<number, number>()

  constructor (private readonly agentId: string, private readonly logger: LifecycleLogger) {}

  get size (): number {
    return this.subscribers.size
  }

  /** Subscribers plus one for a manual hold. */
  get demand (): number {
    return this.subscribers.size + (this.holdIntervalSeconds === null ? 0 : 1)
  }

  add (subscriber: CoordinatedSubscriber): void {
    this.subscribers.add(subscriber)
    this.counts.set(subscriber.intervalSeconds, (this.counts.get(subscriber.intervalSeconds) ?? 0) + 1)
    this.logCount()
  }

  /** False if the subscriber was not (or no longer) in the audience. */
  remove (subscriber: CoordinatedSubscriber): boolean {
    if (!this.subscribers.delete(subscriber)) return false
    this.forgetInterval(subscriber.intervalSeconds)
    this.logCount()
    return true
  }

  /** The smallest interval asked for by a subscriber or the hold (Infinity with no demand). */
  smallestInterval (): number {
    let min = this.holdIntervalSeconds ?? Infinity
    for (const interval of this.counts.keys()) if (interval < min) min = interval
    return min
  }

  /** Every subscriber's interval and the hold's, ascending. */
  intervals (): number[] {
    const intervals: number[] = []
    for (const [interval, count] of this.counts) for (let i = 0; i < count; i++) intervals.push(interval)
    if (this.holdIntervalSeconds !== null) intervals.push(this.holdIntervalSeconds)
    return intervals.sort((a, b) => a - b)
  }

  /** [interval, subscribers asking for it] pairs. */
  intervalCounts (): Array<[number, number]> {
    return [...this.counts]
  }

  /** The stream now runs at `intervalSeconds`: each subscriber recomputes its down-sampling. */
  tune (intervalSeconds: number): void {
    for (const subscriber of this.subscribers) subscriber.tune(intervalSeconds)
  }

  /** The hot path: one sample to every subscriber. */
  offer (entry: HistoryEntry): void {
    for (const subscriber of this.subscribers) {
      try {
        subscriber.offer(entry)
      } catch (err) {
        this.logger.error({ agentId: this.agentId, err }, 'A metrics subscriber threw; other subscribers still receive the sample')
      }
    }
  }

  /** Empties the audience (hold included), then tells each former subscriber why. */
  endAll (notify: (subscriber: CoordinatedSubscriber) => void): void {
    this.holdIntervalSeconds = null
    if (this.subscribers.size === 0) return
    const ended = [...this.subscribers]
    this.subscribers.clear()
    this.counts.clear()
    this.logCount()
    for (const subscriber of ended) this.notify(subscriber, () => notify(subscriber))
  }

  /** Calls into one subscriber; its exception is logged, never thrown into the state machine. */
  notify (subscriber: CoordinatedSubscriber, call: () => void): void {
    try {
      call()
    } catch (err) {
      this.logger.error({ agentId: this.agentId, err }, 'A metrics subscriber threw')
    }
  }

  private forgetInterval (interval: number): void {
    const count = this.counts.get(interval)! - 1
    if (count === 0) this.counts.delete(interval)
    else this.counts.set(interval, count)
  }

  private logCount (): void {
    this.logger.info({ agentId: this.agentId, sseClients: this.subscribers.size }, `Agent ${this.agentId} now has ${this.subscribers.size} SSE clients`)
  }
}
