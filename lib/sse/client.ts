import type { OutgoingHttpHeaders } from 'node:http'

/** What the transport needs of a request: node:http's IncomingMessage and node:http2's compat request both fit. */
export interface RawRequest {
  readonly httpVersionMajor: number
}

/** What the transport needs of a response: node:http's ServerResponse and node:http2's compat response both fit. */
export interface RawResponse {
  readonly writableLength: number
  writeHead (statusCode: number, headers: OutgoingHttpHeaders): unknown
  write (chunk: Uint8Array): boolean
  end (): unknown
  destroy (): unknown
  on (event: 'close' | 'drain' | 'error', listener: () => void): unknown
}

/** Limits every client of a hub shares. */
export interface FlowLimits {
  /** Bytes a client may have queued in user space before latest-value frames are conflated. */
  readonly maxBufferedBytes: number
  now (): number
}

/**
 * One open SSE response. Knows nothing about what it streams.
 *
 * Two ways to send: `write` for frames that must arrive (retry, end, error, gap),
 * `offer` for latest-value frames. When the client's queue is over
 * `maxBufferedBytes`, an offered frame replaces the one already waiting, so a slow
 * client gets the newest value when it drains, never an unbounded queue.
 */
export class SseClient {
  /** Rooms this client is in; still intact when the hub's disconnect handler runs. */
  readonly rooms = new Set<string>()
  /** When the client stopped draining (its queue went over the limit), or 0 while it keeps up. */
  blockedSince = 0
  private open = true
  private waiting: Buffer | null = null

  constructor (readonly id: string, private readonly response: RawResponse, private readonly limits: FlowLimits) {
    response.on('drain', () => this.resume())
  }

  get isOpen (): boolean {
    return this.open
  }

  /** Bytes queued for this client in user space (the socket's kernel buffer is not counted). */
  get bufferedBytes (): number {
    return this.response.writableLength
  }

  write (frame: Buffer): void {
    if (this.open) this.response.write(frame)
  }

  offer (frame: Buffer): void {
    if (!this.open) return
    if (this.blockedSince !== 0) {
      this.waiting = frame
      return
    }
    if (this.response.writableLength >= this.limits.maxBufferedBytes) {
      this.blockedSince = this.limits.now()
      this.waiting = frame
      return
    }
    this.response.write(frame)
  }

  /** Sends the conflated frame once the queue is back under the limit. Called on `drain` and by the hub's sweep. */
  resume (): void {
    if (this.blockedSince === 0 || this.response.writableLength >= this.limits.maxBufferedBytes) return
    this.blockedSince = 0
    const frame = this.waiting
    this.waiting = null
    if (frame && this.open) this.response.write(frame)
  }

  /** Ends the response; the hub's disconnect handler runs when the response closes. */
  close (): void {
    if (!this.open) return
    this.open = false
    this.waiting = null
    this.response.end()
  }

  /** Drops the connection at once (a stalled or failing client). */
  destroy (): void {
    this.open = false
    this.waiting = null
    this.response.destroy()
  }

  /** @internal */
  markClosed (): void {
    this.open = false
    this.waiting = null
  }
}
