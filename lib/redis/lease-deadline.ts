import type { LifecycleTimers } from '../lifecycle/types.js'

/**
 * When this instance's leases run out if no renewal lands: each lease runs at least leaseMs after the call that
 * last set it was sent (the renewal, or the demand change that took it). Past that another instance may own what
 * this one streams: the streams of the leases that ran out stop, the younger ones go on.
 */
export class LeaseDeadline {
  /**
   * Giving a lease up changes its stream's state, which checks the deadline again: the leases that ran out are
   * given up by the outer check, one after the other, not each inside the previous one's (a thousand agents deep
   * was a stack overflow).
   */
  private expiring = false
  /** The oldest live lease's deadline when the timer was armed (Infinity with none): leases taken since run longer. */
  private deadlineAt = Infinity
  private timer: unknown = null

  constructor (
    private readonly leaseMs: number,
    private readonly timers: LifecycleTimers,
    private readonly now: () => number,
    /** Gives up the leases last set by a call sent at or before `sentBy`. */
    private readonly expired: (sentBy: number, why: string) => void,
    /** When the call that set this instance's oldest live lease was sent, or null with none. */
    private readonly oldestLease: () => number | null
  ) {}

  /** Gives up the leases that ran out (a pause may run queued events before the timer). */
  check (now = this.now()): void {
    if (this.expiring || now < this.deadlineAt) return
    const oldest = this.oldestLease()
    if (oldest !== null && now - oldest >= this.leaseMs) {
      this.expiring = true
      try {
        this.expired(now - this.leaseMs, `could not renew its leases for ${now - oldest} ms`)
      } finally {
        this.expiring = false
      }
    }
    this.arm()
  }

  /** Leases were renewed: the deadline is the oldest one's. */
  arm (): void {
    this.stop()
    const oldest = this.oldestLease()
    this.deadlineAt = oldest === null ? Infinity : oldest + this.leaseMs
    if (oldest === null) return
    this.timer = this.timers.setTimeout(() => {
      this.timer = null
      // Re-armed if it fires a hair early (timers and the wall clock round differently).
      if (this.now() < this.deadlineAt) this.arm()
      else this.check()
    }, Math.max(1, this.deadlineAt - this.now()))
  }

  /** A lease was taken: armed if it is the only one (an older lease's deadline comes first otherwise). */
  leaseTaken (): void {
    if (this.deadlineAt === Infinity) this.arm()
  }

  stop (): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer)
    this.timer = null
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
