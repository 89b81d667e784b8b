import { performance } from 'node:perf_hooks'

/** How long a reading of Redis's clock counts: the best of the current span and of the one before it is used. */
const SPAN_MS = 10_000

/**
 * Redis's clock (its `TIME`, which every script returns), as this instance can tell it between replies.
 *
 * A reply is handled late: by its way back and by whatever the event loop did first (a busy instance handles a
 * reply a second or more after Redis wrote it). Each reading therefore puts Redis's clock too early by that lag,
 * never too late, so the best estimate is the highest reading of the recent ones, counted on the monotonic clock
 * (which a step of this machine's clock does not move). Readings older than two spans are forgotten, so that a
 * step back of Redis's own clock is followed; at once if it is larger than any lag an instance can live with
 * (`stepMs`: a lease's length), as when another Redis answers (a replica promoted on a host whose clock is behind).
 */
export class RedisClock {
  /** Redis's clock minus the monotonic clock: the highest reading of the current span, and of the previous one. */
  private best = -Infinity
  private previousBest = -Infinity
  private spanStartedAt = -Infinity

  constructor (private readonly stepMs: number, private readonly monotonicNow: () => number = () => performance.now()) {}

  /** A reply said Redis's clock was `redisMs` (ms) when it was written. */
  observe (redisMs: number): void {
    const now = this.monotonicNow()
    const offset = redisMs - now
    if (offset < Math.max(this.best, this.previousBest) - this.stepMs) {
      // Not a late reply: Redis's clock went back.
      this.previousBest = -Infinity
      this.best = offset
      this.spanStartedAt = now
    } else if (now - this.spanStartedAt >= SPAN_MS) {
      this.previousBest = this.best
      this.best = offset
      this.spanStartedAt = now
    } else if (offset > this.best) {
      this.best = offset
    }
  }

  /** Redis's clock now (ms), as late as the recent readings allow; this machine's clock before any reading. */
  now (): number {
    const offset = Math.max(this.best, this.previousBest)
    return offset === -Infinity ? Date.now() : this.monotonicNow() + offset
  }
}
