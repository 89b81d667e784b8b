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
  cork (): void
  uncork (): void
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
 * Corks each socket on its first write and uncorks them all when the window closes, so the
 * events of a window (or the head and the first frame) leave as one syscall per socket instead
 * of one per event. With `flushIntervalMs` 0 the window is the current tick; otherwise it is
 * that many milliseconds, so samples that arrive one per macrotask (as from an agent transport)
 * to a connection watching many agents are coalesced too. One per hub: one timer per window.
 */
export class WriteBatch {
  private corked: SocketWriter[] = []
  private scheduled = false
  /** Windows closed but not yet all written, oldest first: each flushes `FLUSH_SLICE` sockets per macrotask. */
  private flushing: SocketWriter[][] = []
  private opening: SocketWriter[] = []

  constructor (private readonly flushIntervalMs = 0) {}

  /** @internal */
  add (writer: SocketWriter): void {
    this.corked.push(writer)
    if (this.scheduled) return
    this.scheduled = true
    if (this.flushIntervalMs === 0) process.nextTick(this.close)
    else setTimeout(this.close, this.flushIntervalMs)
  }

  /**
   * @internal A stream that opens leaves at the end of this tick, not of the window: its head and
   * first frames still go as one syscall, and the client is not kept waiting for its response.
   */
  addOpening (writer: SocketWriter): void {
    this.opening.push(writer)
    if (this.opening.length === 1) process.nextTick(this.openAll)
  }

  private readonly openAll = (): void => {
    const writers = this.opening
    this.opening = []
    for (const writer of writers) writer.uncork()
  }

  /** Ends the window: its sockets are written from now on, and a new write opens a new window. */
  private readonly close = (): void => {
    const writers = this.corked
    this.corked = []
    this.scheduled = false
    if (writers.length <= FLUSH_SLICE && this.flushing.length === 0) {
      for (const writer of writers) writer.uncork()
      return
    }
    this.flushing.push(writers)
    if (this.flushing.length === 1) this.flushSlice()
  }

  // Each uncork is a syscall: after a reconnect storm (10,000 clients back within seconds, each
  // head and first frame in the window) one loop over every socket blocked the event loop for
  // hundreds of ms, and new connections and other requests with it. A slice per macrotask keeps it
  // answering; frames still leave in window order.
  private readonly flushSlice = (): void => {
    const writers = this.flushing[0]!
    const end = Math.min(writers.length, FLUSH_SLICE)
    for (let i = 0; i < end; i++) writers[i]!.uncork()
    if (end === writers.length) this.flushing.shift()
    else this.flushing[0] = writers.slice(end)
    if (this.flushing.length > 0) setImmediate(this.flushSlice)
  }
}

/** Sockets written per macrotask when a window closes (each is one syscall). */
const FLUSH_SLICE = 512

/** Bytes a socket holds back for the window at most; past it they are written at once. */
const EARLY_FLUSH_BYTES = 64 * 1024

/**
 * HTTP/1.1: the response head declares chunked encoding, then each frame goes to the
 * socket as one pre-framed chunk shared by all clients. `end()` goes back through the
 * response, which writes the last chunk and keeps keep-alive semantics intact.
 */
class SocketWriter implements FrameWriter {
  private corked = false
  /** Bytes written while corked in this tick: batched, not backed up. */
  private batchedBytes = 0

  constructor (private readonly response: RawResponse, private readonly socket: RawSocket, private readonly batch: WriteBatch, private readonly onDrain: () => void) {
    socket.on('drain', onDrain)
  }

  get queuedBytes (): number {
    return this.socket.writableLength - this.batchedBytes
  }

  write (frame: SseFrame): void {
    this.cork()
    const chunk = frame.chunked
    this.batchedBytes += chunk.length
    this.socket.write(chunk)
    // A burst does not wait for the window past this: held bytes are not counted as backlog.
    if (this.batchedBytes >= EARLY_FLUSH_BYTES) this.uncork()
  }

  /** @internal Holds writes until the batch flushes (`opening`: until the end of this tick). */
  cork (opening = false): void {
    if (this.corked) return
    this.corked = true
    this.socket.cork()
    if (opening) this.batch.addOpening(this)
    else this.batch.add(this)
  }

  /** @internal */
  uncork (): void {
    if (!this.corked) return
    this.corked = false
    this.batchedBytes = 0
    this.socket.uncork()
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
export function startStream (request: RawRequest, response: RawResponse, head: OutgoingHttpHeaders, batch: WriteBatch, onDrain: () => void): FrameWriter {
  const socket = response.socket as RawSocket | null | undefined
  if (request.httpVersionMajor === 1 && request.httpVersionMinor === 1 && socket) {
    head.connection = 'keep-alive'
    head['transfer-encoding'] = 'chunked'
    response.writeHead(200, head)
    const writer = new SocketWriter(response, socket, batch, onDrain)
    // The head leaves with the first frames, in one syscall, at the end of this tick.
    writer.cork(true)
    response.flushHeaders()
    return writer
  }
  // Connection-specific headers are forbidden in HTTP/2.
  if (request.httpVersionMajor === 1) head.connection = 'keep-alive'
  response.writeHead(200, head)
  return new ResponseWriter(response, onDrain)
}
