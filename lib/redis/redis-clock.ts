import { performance } from 'node:perf_hooks'

/** How long a reading of Redis's clock counts: the best of the current span and of the one before it is used. */
const SPAN_MS = 10_000
/** A reply this far behind the best reading, even counted from when its call was sent, says Redis's clock went back. */
const STEP_BACK_MS = 1000

/**
 * Redis's clock (its `TIME`, which the scripts return), as this instance can tell it between replies.
 *
 * A reply is handled late: by its way back and by whatever the event loop did first (a busy instance handles a
 * reply a second or more after Redis wrote it). Each reading therefore puts Redis's clock too early by that lag,
 * never too late, so the best estimate is the highest reading of the recent ones, counted on the monotonic clock
 * (which a step of this machine's clock does not move). Counted from when its call was sent instead, a reading is
 * never too early: when even that is well behind the best reading, Redis's clock went back (another Redis answers,
 * say a replica promoted on a host whose clock is behind), and the estimate starts again from it. Readings older
 * than two spans are forgotten, so that a small step back is followed too.
 */
export class RedisClock {
  /** Redis's clock minus the monotonic clock: the highest reading of the current span, and of the previous one. */
  private best = -Infinity
  private previousBest = -Infinity
  private spanStartedAt = -Infinity

  constructor (private readonly monotonicNow: () => number = () => performance.now()) {}

  /** Taken before a call whose reply tells Redis's clock, and given to `observe` with that reply. */
  callStarted (): number {
    return this.monotonicNow()
  }

  /** A reply to a call sent at `sentAt` (from `callStarted`) said Redis's clock was `redisMs` (ms) when it was written. */
  observe (redisMs: number, sentAt: number): void {
    const now = this.monotonicNow()
    const offset = redisMs - now
    if (redisMs - sentAt < Math.max(this.best, this.previousBest) - STEP_BACK_MS) {
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
