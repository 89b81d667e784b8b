import { performance } from 'node:perf_hooks'

/** What a write batch needs of a connection's writer. */
export interface BatchedWriter {
  /** Writes what it holds, in one syscall. */
  flush (): void
}

/** Sockets written per macrotask (each write is a syscall). */
const FLUSH_SLICE = 512

/** A window opened by a write after a quiet one is this part of `flushIntervalMs` long (see `passEnded`)… */
const LEADING_WINDOW = 0.75
/** …and the next window never closes less than this part of one after the write that opens it ended. */
const WINDOW_AFTER_WRITE = 0.5

/** One round of writes (written `FLUSH_SLICE` per macrotask). */
interface Pass {
  readonly writers: BatchedWriter[]
  /**
   * What the window it opens follows: `leading` (a write after a quiet window), the end of the window
   * these writers waited for, or `none` for new streams (they leave whatever the window, and open none).
   */
  readonly after: number | 'leading' | 'none'
  /** When its first write began. */
  startedAt: number
}

/**
 * When connections' frames leave: a write window with a leading edge (Nagle's algorithm, in time
 * rather than bytes), one per hub.
 *
 * Frames that arrive when no window is open leave at the end of the tick, and that write opens a
 * window of `flushIntervalMs`: frames arriving while it is open wait until it closes, then leave as
 * one write per connection, which opens the next window. Samples at an agent's pace (one per window
 * or slower) therefore leave as soon as they arrive, while a busy hub (a fleet connection's many
 * agents, a burst) writes each connection at most once per window, with one timer for all. With
 * `flushIntervalMs` 0 every write leaves at the end of the tick. A new stream's head and first frames
 * leave at the end of the tick, whatever the window.
 */
export class WriteBatch {
  /** New streams, written at the end of this tick. */
  private opening: BatchedWriter[] = []
  /** Connections written at the end of this tick because no window was open (this tick opened one). */
  private leading: BatchedWriter[] = []
  /** Connections waiting for the window to close. */
  private waiting: BatchedWriter[] = []
  /** Frames scheduled before this wait for it (the end of the open window). */
  private windowEnd = -Infinity
  private timerArmed = false
  /** Passes not yet fully written, oldest first. */
  private passes: Pass[] = []
  private passFrom = 0

  constructor (private readonly flushIntervalMs = 0, private readonly clock: { now (): number } = performance) {}

  /** The writer has frames to send (and was not scheduled yet): now, or when the window closes. */
  schedule (writer: BatchedWriter): void {
    if (this.leading.length > 0 || this.flushIntervalMs === 0) {
      // The tick that opened the window: every frame of it leaves with the first.
      this.lead(writer)
      return
    }
    const now = this.clock.now()
    if (now >= this.windowEnd) {
      this.windowEnd = now + this.flushIntervalMs
      this.lead(writer)
      return
    }
    this.waiting.push(writer)
    if (!this.timerArmed) this.arm(now)
  }

  /** A new stream: its head and first frames leave at the end of this tick, whatever the window. */
  open (writer: BatchedWriter): void {
    this.opening.push(writer)
    if (this.opening.length === 1) process.nextTick(this.flushOpening)
  }

  private lead (writer: BatchedWriter): void {
    this.leading.push(writer)
    if (this.leading.length === 1) process.nextTick(this.flushLeading)
  }

  private arm (now: number): void {
    this.timerArmed = true
    setTimeout(this.close, Math.max(0, this.windowEnd - now)).unref()
  }

  private readonly flushOpening = (): void => {
    const writers = this.opening
    this.opening = []
    this.enqueue({ writers, after: 'none', startedAt: 0 })
  }

  private readonly flushLeading = (): void => {
    const writers = this.leading
    this.leading = []
    this.enqueue({ writers, after: 'leading', startedAt: 0 })
  }

  private readonly close = (): void => {
    this.timerArmed = false
    const now = this.clock.now()
    // A pass that ended late moved the window on after the timer was armed.
    if (now < this.windowEnd - 1) {
      this.arm(now)
      return
    }
    const writers = this.waiting
    this.waiting = []
    const after = this.windowEnd
    // Frames arriving while this pass is written wait for the next window (see `passEnded`).
    this.windowEnd = after + this.flushIntervalMs
    this.enqueue({ writers, after, startedAt: 0 })
  }

  private enqueue (pass: Pass): void {
    this.passes.push(pass)
    if (this.passes.length === 1) this.writeSlice()
  }

  // Each write is a syscall: after a reconnect storm (10,000 clients back within seconds, each
  // head and first frame in the window) one loop over every socket blocked the event loop for
  // hundreds of ms, and new connections and other requests with it. A slice per macrotask keeps it
  // answering; a connection's frames still leave in order (it is in one list at a time).
  private readonly writeSlice = (): void => {
    const pass = this.passes[0]!
    if (this.passFrom === 0) pass.startedAt = this.clock.now()
    const end = Math.min(pass.writers.length, this.passFrom + FLUSH_SLICE)
    for (let i = this.passFrom; i < end; i++) pass.writers[i]!.flush()
    if (end < pass.writers.length) {
      this.passFrom = end
    } else {
      this.passes.shift()
      this.passFrom = 0
      this.passEnded(pass)
    }
    if (this.passes.length > 0) setImmediate(this.writeSlice)
  }

  /**
   * The window a write opens. After a quiet window it is shorter than `flushIntervalMs`
   * (`LEADING_WINDOW`), so that samples at about the window's pace keep leaving as they arrive: a
   * sample a little early would wait, and with a full window every later one would then wait as
   * long. A window that closed with frames waiting is followed by the next at once, counted from
   * when it ended rather than from when its timer fired or its write ran, so late timers do not add
   * up. Whatever the window, a write that takes long (thousands of sockets, a busy loop) leaves
   * frames half a window after it ends (`WINDOW_AFTER_WRITE`), so that writing cannot take the loop over.
   */
  private passEnded (pass: Pass): void {
    if (pass.after === 'none' || this.flushIntervalMs === 0) return
    const interval = this.flushIntervalMs
    const follows = pass.after === 'leading' ? pass.startedAt + interval * LEADING_WINDOW : pass.after + interval
    this.windowEnd = Math.max(follows, this.clock.now() + interval * WINDOW_AFTER_WRITE)
  }
}
