import type { OutgoingHttpHeaders } from 'node:http'
import type { SseFrame } from './frame.js'

/** What the transport needs of a request: node:http's IncomingMessage and node:http2's compat request both fit. */
export interface RawRequest {
  readonly httpVersionMajor: number
  readonly httpVersionMinor: number
}

/** A socket as node:http gives it (only used for HTTP/1.1). */
export interface RawSocket {
  readonly writableLength: number
  write (chunk: Uint8Array): boolean
  destroy (): unknown
  on (event: 'drain', listener: () => void): unknown
  removeListener (event: 'drain', listener: () => void): unknown
}

/** What the transport needs of a response: node:http's ServerResponse and node:http2's compat response both fit. */
export interface RawResponse {
  readonly writableLength: number
  readonly socket?: unknown
  /** node:http sets it when the connection closed; node:http2's compat response has `stream.destroyed` instead. */
  readonly destroyed?: boolean
  readonly stream?: { readonly destroyed: boolean }
  writeHead (statusCode: number, headers: OutgoingHttpHeaders): unknown
  flushHeaders (): void
  write (chunk: Uint8Array): boolean
  end (): unknown
  destroy (): unknown
  on (event: 'close' | 'drain' | 'error', listener: () => void): unknown
  removeListener (event: 'drain', listener: () => void): unknown
}

/** Where a client's frames go. */
export interface FrameWriter {
  /** Bytes queued in user space, not yet handed to the kernel. */
  readonly queuedBytes: number
  write (frame: SseFrame): void
  end (): void
  destroy (): void
  /** Removes the writer's listeners (the socket may outlive the response under keep-alive). */
  dispose (): void
}

/**
 * HTTP/1.1: the response head declares chunked encoding and is flushed, then each frame
 * goes to the socket as one pre-framed chunk shared by all clients. `end()` goes back
 * through the response, which writes the last chunk and keeps keep-alive semantics intact.
 */
class SocketWriter implements FrameWriter {
  constructor (private readonly response: RawResponse, private readonly socket: RawSocket, private readonly onDrain: () => void) {
    socket.on('drain', onDrain)
  }

  get queuedBytes (): number {
    return this.socket.writableLength
  }

  write (frame: SseFrame): void {
    this.socket.write(frame.chunked)
  }

  end (): void {
    this.response.end()
  }

  destroy (): void {
    this.socket.destroy()
  }

  dispose (): void {
    this.socket.removeListener('drain', this.onDrain)
  }
}

/** HTTP/2 (and HTTP/1.0): through the response, which does the framing. */
class ResponseWriter implements FrameWriter {
  constructor (private readonly response: RawResponse, private readonly onDrain: () => void) {
    response.on('drain', onDrain)
  }

  get queuedBytes (): number {
    return this.response.writableLength
  }

  write (frame: SseFrame): void {
    this.response.write(frame.bytes)
  }

  end (): void {
    this.response.end()
  }

  destroy (): void {
    this.response.destroy()
  }

  dispose (): void {
    this.response.removeListener('drain', this.onDrain)
  }
}

/**
 * True if the client is already gone. A request whose client left while an async hook ran
 * has already emitted `close`, which will not come again.
 */
export function isGone (response: RawResponse): boolean {
  return response.destroyed === true || response.stream?.destroyed === true
}

/** Sends the status line and headers now, and picks the cheapest way to write frames on this connection. */
export function startStream (request: RawRequest, response: RawResponse, head: OutgoingHttpHeaders, onDrain: () => void): FrameWriter {
  const socket = response.socket as RawSocket | null | undefined
  if (request.httpVersionMajor === 1 && request.httpVersionMinor === 1 && socket) {
    response.writeHead(200, { ...head, connection: 'keep-alive', 'transfer-encoding': 'chunked' })
    response.flushHeaders()
    return new SocketWriter(response, socket, onDrain)
  }
  // Connection-specific headers are forbidden in HTTP/2.
  response.writeHead(200, request.httpVersionMajor === 1 ? { ...head, connection: 'keep-alive' } : head)
  return new ResponseWriter(response, onDrain)
}
