import type { OutgoingHttpHeaders } from 'node:http'
import { encodeRetry } from './frame.js'

/** What the hub needs of a request: node:http's IncomingMessage and node:http2's compat request both fit. */
export interface RawRequest {
  readonly httpVersionMajor: number
}

/** What the hub needs of a response: node:http's ServerResponse and node:http2's compat response both fit. */
export interface RawResponse {
  writeHead (statusCode: number, headers: OutgoingHttpHeaders): unknown
  write (chunk: Uint8Array): boolean
  end (): unknown
  once (event: 'close', listener: () => void): unknown
}

export type SseHeaders = Record<string, string | number | readonly string[] | undefined>

/** One open SSE response. Knows nothing about what it streams. */
export class SseClient {
  /** Rooms this client is in; still intact when the hub's disconnect handler runs. */
  readonly rooms = new Set<string>()
  private open = true

  constructor (readonly id: string, private readonly response: RawResponse) {}

  get isOpen (): boolean {
    return this.open
  }

  /** Writes a frame; a no-op once the client is closed. */
  write (frame: Buffer): void {
    if (this.open) this.response.write(frame)
  }

  /** Ends the response; the hub's disconnect handler runs when the response closes. */
  close (): void {
    if (!this.open) return
    this.open = false
    this.response.end()
  }

  /** @internal */
  markClosed (): void {
    this.open = false
  }
}

export interface SseHubOptions {
  /** Base reconnection delay sent as `retry:`; each client gets it jittered by ±20% so a restart does not bring every client back at once. */
  retryMs: number
  /** Called once per client when its response closes for any reason, before the client leaves its rooms. */
  onDisconnect (client: SseClient): void
  random?: () => number
}

/** Open SSE responses and the rooms they are in. Transport only. */
export class SseHub {
  private readonly clients = new Set<SseClient>()
  private readonly rooms = new Map<string, Set<SseClient>>()

  constructor (private readonly options: SseHubOptions) {}

  /**
   * Starts an SSE response on a raw request/response pair the framework no longer
   * manages (Fastify: after `reply.hijack()`), keeping headers already set on it.
   */
  open (id: string, request: RawRequest, response: RawResponse, headers: SseHeaders = {}): SseClient {
    const client = new SseClient(id, response)
    this.clients.add(client)
    // `close` on the response, not the request: the request's fires as soon as its body is read.
    response.once('close', () => this.disconnect(client))
    const head: OutgoingHttpHeaders = {
      ...(headers as OutgoingHttpHeaders),
      'content-type': 'text/event-stream; charset=utf-8',
      // no-transform: a compressing proxy or middleware must not buffer the stream.
      'cache-control': 'no-cache, no-transform',
      // Tells nginx not to buffer the stream.
      'x-accel-buffering': 'no'
    }
    // Connection-specific headers are forbidden in HTTP/2.
    if (request.httpVersionMajor < 2) head.connection = 'keep-alive'
    response.writeHead(200, head)
    const jitter = 0.8 + (this.options.random ?? Math.random)() * 0.4
    client.write(encodeRetry(Math.round(this.options.retryMs * jitter)))
    return client
  }

  join (client: SseClient, room: string): void {
    if (!client.isOpen) return
    let members = this.rooms.get(room)
    if (!members) {
      members = new Set()
      this.rooms.set(room, members)
    }
    members.add(client)
    client.rooms.add(room)
  }

  /** Writes a final frame to every client and ends them all. */
  closeAll (finalFrame?: Buffer): void {
    for (const client of this.clients) {
      if (finalFrame) client.write(finalFrame)
      client.close()
    }
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
      client.rooms.clear()
      this.clients.delete(client)
    }
  }
}
