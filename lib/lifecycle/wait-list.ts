/** Callers waiting for the state machine to reach a state, settled all at once. */
export class WaitList {
  private waiters: Array<{ resolve (): void, reject (err: Error): void }> = []

  get size (): number {
    return this.waiters.length
  }

  wait (): Promise<void> {
    return new Promise<void>((resolve, reject) => { this.waiters.push({ resolve, reject }) })
  }

  resolveAll (): void {
    for (const waiter of this.take()) waiter.resolve()
  }

  rejectAll (err: Error): void {
    for (const waiter of this.take()) waiter.reject(err)
  }

  // Taken before settling, so a waiter that waits again lands in the next round.
  private take () {
    const waiters = this.waiters
    this.waiters = []
    return waiters
  }
}
