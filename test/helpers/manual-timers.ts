import type { LifecycleTimers } from '../../lib/index.js'

interface PendingTimer {
  id: number
  due: number
  callback: () => void
}

/** Injectable timers that only move when the test says so. */
export class ManualTimers implements LifecycleTimers {
  now = 0
  private nextId = 1
  private pending: PendingTimer[] = []

  /** `settle` lets queued promise callbacks run between timers (the default waits for a few event-loop turns). */
  constructor (private readonly settle: () => Promise<void> = flush) {}

  setTimeout (callback: () => void, ms: number): unknown {
    const timer = { id: this.nextId++, due: this.now + ms, callback }
    this.pending.push(timer)
    return timer.id
  }

  clearTimeout (handle: unknown): void {
    this.pending = this.pending.filter((timer) => timer.id !== handle)
  }

  get pendingCount (): number {
    return this.pending.length
  }

  /** Moves time forward, firing due timers in order, and lets promise callbacks run after each. */
  async advance (ms: number): Promise<void> {
    const target = this.now + ms
    for (;;) {
      await this.settle()
      const next = this.pending.filter((timer) => timer.due <= target).sort((a, b) => a.due - b.due || a.id - b.id)[0]
      if (!next) break
      this.pending = this.pending.filter((timer) => timer !== next)
      this.now = next.due
      next.callback()
    }
    this.now = target
    await this.settle()
  }
}

/** Lets every queued promise callback run (several turns, for chains of thens). */
export async function flush (): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** Lets chains of promise callbacks run without leaving the microtask queue (fast, for property tests). */
export async function drainMicrotasks (): Promise<void> {
  for (let i = 0; i < 40; i++) await Promise.resolve()
}
