import type { LifecycleTimers } from '../lifecycle/types.js'

interface Waiter<T> {
  resolve (value: T): void
  reject (err: Error): void
  timer: unknown
}

/**
 * Callers waiting for something another instance does (a stream becoming active, an owner's
 * answer), by key. Every wait has a deadline, so nothing hangs on a peer that never answers.
 */
export class TimedWaits<T = void> {
  private readonly waiting = new Map<string, Set<Waiter<T>>>()

  constructor (private readonly timers: LifecycleTimers) {}

  has (key: string): boolean {
    return this.waiting.has(key)
  }

  keys (): string[] {
    return [...this.waiting.keys()]
  }

  /** Waits for `settle(key)`; after `timeoutMs`, rejects with what `onTimeout` returns. */
  wait (key: string, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        timer: this.timers.setTimeout(() => {
          this.remove(key, waiter)
          reject(onTimeout())
        }, timeoutMs)
      }
      let waiters = this.waiting.get(key)
      if (!waiters) {
        waiters = new Set()
        this.waiting.set(key, waiters)
      }
      waiters.add(waiter)
    })
  }

  resolve (key: string, value: T): void {
    for (const waiter of this.take(key)) waiter.resolve(value)
  }

  reject (key: string, err: Error): void {
    for (const waiter of this.take(key)) waiter.reject(err)
  }

  rejectAll (err: Error): void {
    for (const key of this.keys()) this.reject(key, err)
  }

  private take (key: string): Array<Waiter<T>> {
    const waiters = this.waiting.get(key)
    if (!waiters) return []
    this.waiting.delete(key)
    for (const waiter of waiters) this.timers.clearTimeout(waiter.timer)
    return [...waiters]
  }

  private remove (key: string, waiter: Waiter<T>): void {
    const waiters = this.waiting.get(key)
    if (!waiters) return
    waiters.delete(waiter)
    if (waiters.size === 0) this.waiting.delete(key)
  }
}
