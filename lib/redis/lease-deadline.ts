import type { LifecycleTimers } from '../lifecycle/types.js'

/**
 * When this instance's leases run out if no renewal lands: leaseMs after the last renewal was sent (the
 * leases in Redis run at least until then). Past it another instance may own what this one streams: stop.
 */
export class LeaseDeadline {
  private renewedAt = 0
  /**
   * The renewal whose deadline passed: its leases are given up once. Giving one up changes its stream's state,
   * which checks the deadline again; without this, each agent's was given up inside the previous one's, a
   * thousand agents deep (a stack overflow). A lease taken after it runs from its own taking, later: it is left
   * to the next renewal (and every write of its owner stays fenced by the lease inside Redis).
   */
  private expiredFor = -1
  private timer: unknown = null

  constructor (
    private readonly leaseMs: number,
    private readonly timers: LifecycleTimers,
    private readonly now: () => number,
    private readonly expired: (why: string) => void,
    private readonly holdsLeases: () => boolean
  ) {}

  /** Gives the leases up if the deadline passed (a pause may run queued events before the timer). */
  check (now = this.now()): void {
    if (this.holdsLeases() && this.renewedAt > 0 && this.renewedAt !== this.expiredFor && now - this.renewedAt >= this.leaseMs) {
      this.expiredFor = this.renewedAt
      this.expired(`could not renew its leases for ${now - this.renewedAt} ms`)
    }
  }

  /** A renewal sent at `sentAt` was answered. */
  renewed (sentAt: number): void {
    this.renewedAt = sentAt
    this.arm()
  }

  stop (): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer)
    this.timer = null
  }

  // Re-armed if it fires a hair early (timers and the wall clock round differently).
  private arm (): void {
    this.stop()
    const remaining = this.renewedAt + this.leaseMs - this.now()
    this.timer = this.timers.setTimeout(() => {
      this.timer = null
      if (this.renewedAt + this.leaseMs > this.now()) this.arm()
      else this.check()
    }, Math.max(1, remaining))
  }
}

/**
 * Timers whose callbacks wait for the I/O already received: after a pause (SIGSTOP, a long GC) Node
 * runs overdue timers before it reads the sockets, so a reply that did arrive in time would lose
 * to its own timeout. setImmediate runs after the poll phase that delivers it.
 */
export function afterPendingIo (timers: LifecycleTimers): LifecycleTimers {
  return {
    setTimeout: (callback, ms) => timers.setTimeout(() => setImmediate(callback), ms),
    clearTimeout: (handle) => timers.clearTimeout(handle)
  }
}
