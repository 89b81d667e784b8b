import type { OutgoingHttpHeaders } from 'node:http'
import { SseClient, type FlowLimits } from './client.js'
import { encodeComment, encodeRetry, type SseFrame } from './frame.js'
import { WriteBatch } from './write-batch.js'
import { isGone, startStream, type RawRequest, type RawResponse } from './writer.js'

export { SseClient } from './client.js'
export type { RawRequest, RawResponse } from './writer.js'

export type SseHeaders = Record<string, string | number | readonly string[] | undefined>

export interface SseHubOptions {
  /** Base reconnection delay sent as `retry:`; each client gets it jittered by ±20% so a restart does not bring every client back at once. */
  retryMs: number
  /** A `: ping` comment this often so proxies keep idle streams open and dead peers surface; 0 disables. */
  heartbeatIntervalMs: number
  /** Latest-value frames are conflated for a client with more than this queued. */
  maxBufferedBytes: number
  /** A client that has not drained for this long is disconnected. */
  stallTimeoutMs: number
  /** Called once per client when its response closes for any reason, before the client leaves its rooms. */
  onDisconnect (client: SseClient): void
  /** Called when a stalled client is dropped (before its disconnect). */
  onStall? (client: SseClient, stalledForMs: number): void
  /** Called when a blocked client's frame waiting in `slot` is replaced by a newer one (see `SseClient.offer`). */
  onConflate? (client: SseClient, slot: string): void
  /** The longest a frame waits to leave with others as one write (0: the end of the tick); a frame after a quiet window does not wait (see `WriteBatch`). */
  flushIntervalMs?: number
  random?: () => number
  now?: () => number
}

const PING = encodeComment('ping')

/**
 * Open SSE responses and the rooms they are in. Transport only.
 * Per-client work is a flat object and one `drain` listener; heartbeats and stall
 * checks are one timer each for the whole hub, running only while it has clients.
 */
export class SseHub {
  private readonly clients = new Set<SseClient>()
  private readonly rooms = new Map<string, Set<SseClient>>()
  private readonly limits: FlowLimits
  private readonly batch: WriteBatch
  private readonly retryFrames = new Map<number, SseFrame>()
  private heartbeatTimer: NodeJS.Timeout | null = null
  private sweepTimer: NodeJS.Timeout | null = null

  constructor (private readonly options: SseHubOptions) {
    this.limits = { maxBufferedBytes: options.maxBufferedBytes, now: options.now ?? Date.now, onConflate: options.onConflate }
    this.batch = new WriteBatch(options.flushIntervalMs ?? 0)
  }

  get size (): number {
    return this.clients.size
  }

  roomSize (room: string): number {
    return this.rooms.get(room)?.size ?? 0
  }

  /** Every open client (for diagnostics). */
  all (): IterableIterator<SseClient> {
    return this.clients.values()
  }

  /**
   * Starts an SSE response on a raw request/response pair the framework no longer
   * manages (Fastify: after `reply.hijack()`), keeping headers already set on it.
   * Returns null, and does nothing, if the client has already gone.
   */
  open (id: string, request: RawRequest, response: RawResponse, headers: SseHeaders = {}): SseClient | null {
    if (isGone(response)) return null
    const client = new SseClient(id, this.limits)
    this.clients.add(client)
    // `close` on the response, not the request: the request's fires as soon as its body is read.
    response.on('close', () => this.disconnect(client))
    // A write to a broken socket is a disconnect, not a crash.
    response.on('error', () => client.destroy())
    const head: OutgoingHttpHeaders = {
      ...(headers as OutgoingHttpHeaders),
      'content-type': 'text/event-stream; charset=utf-8',
      // no-transform: a compressing proxy or middleware must not buffer the stream.
      'cache-control': 'no-cache, no-transform',
      // Tells nginx not to buffer the stream.
      'x-accel-buffering': 'no'
    }
    client.attach(startStream(request, response, head, this.batch, () => client.resume()))
    const jitter = 0.8 + (this.options.random ?? Math.random)() * 0.4
    client.write(this.retryFrame(Math.round(this.options.retryMs * jitter)))
    this.startTimers()
    return client
  }

  // At most ~0.4 × retryMs + 1 distinct values, so the frames are kept rather than rebuilt per connection.
  private retryFrame (retryMs: number): SseFrame {
    let frame = this.retryFrames.get(retryMs)
    if (!frame) {
      frame = encodeRetry(retryMs)
      this.retryFrames.set(retryMs, frame)
    }
    return frame
  }

  join (client: SseClient, room: string): void {
    if (!client.isOpen) return
    let members = this.rooms.get(room)
    if (!members) {
      members = new Set()
      this.rooms.set(room, members)
    }
    members.add(client)
    if (!client.rooms.includes(room)) client.rooms.push(room)
  }

  leave (client: SseClient, room: string): void {
    const members = this.rooms.get(room)
    members?.delete(client)
    if (members?.size === 0) this.rooms.delete(room)
    const index = client.rooms.indexOf(room)
    if (index !== -1) client.rooms.splice(index, 1)
  }

  /** Writes each client its final frame (if any) and ends them all. */
  closeAll (finalFrame?: (client: SseClient) => SseFrame | null): void {
    for (const client of this.clients) {
      const frame = finalFrame?.(client) ?? null
      if (frame !== null) client.write(frame)
      client.close()
    }
    this.stopTimers()
  }

  private disconnect (client: SseClient): void {
    client.markClosed()
    try {
      this.options.onDisconnect(client)
    } finally {
      for (const room of client.rooms) {
        const members = this.rooms.get(room)
        members?.delete(client)
        if (members?.size === 0) this.rooms.delete(room)
      }
      client.rooms.length = 0
      this.clients.delete(client)
      if (this.clients.size === 0) this.stopTimers()
    }
  }

  private startTimers (): void {
    if (this.heartbeatTimer === null && this.options.heartbeatIntervalMs > 0) {
      this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.heartbeatIntervalMs).unref()
    }
    if (this.sweepTimer === null) {
      // Fine enough to drop a stalled client within ~25% of stallTimeoutMs, coarse enough to cost nothing.
      const every = Math.min(1000, Math.max(10, Math.floor(this.options.stallTimeoutMs / 4)))
      this.sweepTimer = setInterval(() => this.sweep(), every).unref()
    }
  }

  private stopTimers (): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.heartbeatTimer = null
    this.sweepTimer = null
  }

  private heartbeat (): void {
    // A client that is not draining gets no ping: it would only grow its queue.
    for (const client of this.clients) if (client.blockedSince === 0) client.write(PING)
  }

  private sweep (): void {
    const now = this.limits.now()
    for (const client of this.clients) {
      // Bytes written in an earlier tick (corked writes are counted once they leave the batch).
      client.checkBlocked()
      if (client.blockedSince === 0) continue
      client.resume()
      const stalledForMs = now - client.blockedSince
      if (client.blockedSince !== 0 && stalledForMs >= this.options.stallTimeoutMs) {
        this.options.onStall?.(client, stalledForMs)
        client.destroy()
      }
    }
  }
}
