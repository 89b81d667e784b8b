import type { SseFrame } from './frame.js'
import type { FrameWriter } from './writer.js'

/** Flow control every client of a hub shares. */
export interface FlowLimits {
  /** Bytes a client may have queued in user space before latest-value frames are conflated. */
  readonly maxBufferedBytes: number
  now (): number
  /** A frame waiting in `slot` was replaced by a newer one: the client will never get it. */
  onConflate? (client: SseClient, slot: string): void
}

/**
 * One open SSE response. Knows nothing about what it streams.
 *
 * Two ways to send: `write` for frames that must arrive (retry, end, error, gap),
 * `offer` for latest-value frames. When the client's queue is over
 * `maxBufferedBytes`, an offered frame replaces the one already waiting in its slot
 * (one slot per stream the connection carries), so a slow client gets the newest value
 * of each when it drains, never an unbounded queue.
 */
export class SseClient {
  /** Rooms this client is in (usually one: an array is cheaper per connection than a Set); still intact when the hub's disconnect handler runs. */
  readonly rooms: string[] = []
  /** When the client stopped draining (its queue went over the limit), or 0 while it keeps up. */
  blockedSince = 0
  private open = true
  /** Conflated frames by slot, while blocked (at most one per slot the connection offers to). */
  private waiting: Map<string, SseFrame> | null = null
  private writer: FrameWriter | null = null

  constructor (readonly id: string, private readonly limits: FlowLimits) {}

  /** @internal Set once the response head is out. */
  attach (writer: FrameWriter): void {
    this.writer = writer
  }

  get isOpen (): boolean {
    return this.open
  }

  /** Bytes queued for this client in user space (the socket's kernel buffer is not counted). */
  get bufferedBytes (): number {
    return this.writer?.queuedBytes ?? 0
  }

  write (frame: SseFrame): void {
    if (!this.open) return
    this.writer!.write(frame)
    this.checkBlocked()
  }

  /**
   * Every write counts toward a stall, not only offered samples: a client that only gets a
   * replay and heartbeats (a long interval) must be dropped after stallTimeoutMs like any other.
   */
  checkBlocked (): void {
    if (this.blockedSince === 0 && this.open && this.writer!.queuedBytes >= this.limits.maxBufferedBytes) {
      this.blockedSince = this.limits.now()
    }
  }

  /** A latest-value frame: while the client is blocked it replaces the frame waiting in the same `slot`. */
  offer (frame: SseFrame, slot = ''): void {
    if (!this.open) return
    if (this.blockedSince === 0) {
      if (this.writer!.queuedBytes < this.limits.maxBufferedBytes) {
        this.writer!.write(frame)
        return
      }
      this.blockedSince = this.limits.now()
    }
    this.waiting ??= new Map()
    if (this.waiting.delete(slot)) this.limits.onConflate?.(this, slot)
    this.waiting.set(slot, frame)
  }

  /** Sends the conflated frames once the queue is back under the limit. Called on `drain` and by the hub's sweep. */
  resume (): void {
    if (this.blockedSince === 0 || !this.open || this.writer!.queuedBytes >= this.limits.maxBufferedBytes) return
    this.blockedSince = 0
    const waiting = this.waiting
    this.waiting = null
    if (waiting === null) return
    // Ids must keep increasing on the connection: frames without an id first, then by id.
    const frames = [...waiting.values()].sort((a, b) => (a.eventId ?? 0) - (b.eventId ?? 0))
    for (const frame of frames) this.writer!.write(frame)
  }

  /** Ends the response; the hub's disconnect handler runs when the response closes. */
  close (): void {
    if (!this.open) return
    this.open = false
    this.waiting = null
    this.writer?.end()
  }

  /** Drops the connection at once (a stalled or failing client). */
  destroy (): void {
    this.open = false
    this.waiting = null
    this.writer?.destroy()
  }

  /** @internal The response closed. */
  markClosed (): void {
    this.open = false
    this.waiting = null
    this.writer?.dispose()
  }
}
