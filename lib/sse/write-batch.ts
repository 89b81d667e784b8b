import { performance } from 'node:perf_hooks'

/** What a write batch needs of a connection's writer. */
export interface BatchedWriter {
  /** Writes what it holds, in one syscall. */
  flush (): void
}

/** Sockets written per macrotask (each write is a syscall). */
const FLUSH_SLICE = 512

/**
 * A window is this part of `flushIntervalMs` long when the hub was not busy: after a quiet window, or
 * when the frames that waited came late in theirs (see `passEnded`).
 */
const SHORT_WINDOW = 0.75
/** A busy hub's window never closes less than this part of one after the write that opened it ended. */
const WINDOW_AFTER_WRITE = 0.5

/** One round of writes (written `FLUSH_SLICE` per macrotask). */
interface Pass {
  readonly writers: BatchedWriter[]
  /**
   * The window it opens: a short one after a quiet window (`leading`, counted from the pass's start),
   * the one that follows the window that closed (`closing`), or none for new streams (`opening`:
   * they leave whatever the window).
   */
  readonly kind: 'opening' | 'leading' | 'closing'
  /** `closing`: when the next window ends, and whether it is a whole one (a busy hub). */
  readonly nextWindowEnd: number
  readonly busy: boolean
  /** When its first write began. */
  startedAt: number
}

/**
 * When connections' frames leave: a write window with a leading edge (Nagle's algorithm, in time
 * rather than bytes), one per hub.
 *
 * Frames that arrive when no window is open leave at the end of the tick, and that write opens a
 * window: frames arriving while it is open wait until it closes (at most `flushIntervalMs`), then
 * leave as one write per connection, which opens the next window. Samples at an agent's pace (one per window
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
  /** When the first of the connections now waiting started to wait. */
  private firstWaitAt = 0
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
    if (this.waiting.length === 1) this.firstWaitAt = now
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
    this.enqueue({ writers, kind: 'opening', nextWindowEnd: 0, busy: false, startedAt: 0 })
  }

  private readonly flushLeading = (): void => {
    const writers = this.leading
    this.leading = []
    this.enqueue({ writers, kind: 'leading', nextWindowEnd: 0, busy: false, startedAt: 0 })
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
    // The next window follows this one, counted from when it ended (not from when its timer fired, or
    // late timers would add up). It is a whole window if the hub is busy (the first frame waited most
    // of this one), a short one if the frames came late in it (samples at about the window's pace).
    const interval = this.flushIntervalMs
    const busy = this.windowEnd - this.firstWaitAt >= interval * 0.5
    const nextWindowEnd = this.windowEnd + interval * (busy ? 1 : SHORT_WINDOW)
    // Frames arriving while this pass is written wait for the next window.
    this.windowEnd = nextWindowEnd
    this.enqueue({ writers, kind: 'closing', nextWindowEnd, busy, startedAt: 0 })
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
   * (`SHORT_WINDOW`, from the write's start), and so is the one after frames that came late in
   * theirs, so that samples at about the window's pace keep leaving as they arrive: one a little
   * early waits only for the rest of the short window, and the next leads again. (With whole windows,
   * or windows counted from a write's end, it would wait a window, and every later one as long:
   * writing 200 sockets takes several ms on a busy machine.) A busy hub's write that takes long
   * (thousands of sockets, a busy loop) leaves frames half a window after it ends
   * (`WINDOW_AFTER_WRITE`) to gather, so that writing cannot take the loop over.
   */
  private passEnded (pass: Pass): void {
    if (pass.kind === 'opening' || this.flushIntervalMs === 0) return
    const interval = this.flushIntervalMs
    if (pass.kind === 'leading') this.windowEnd = pass.startedAt + interval * SHORT_WINDOW
    else if (pass.busy) this.windowEnd = Math.max(pass.nextWindowEnd, this.clock.now() + interval * WINDOW_AFTER_WRITE)
    else this.windowEnd = pass.nextWindowEnd
  }
}
