import type { OutgoingHttpHeaders } from 'node:http'
import type { SseFrame } from './frame.js'
import type { BatchedWriter, WriteBatch } from './write-batch.js'

export { WriteBatch } from './write-batch.js'

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

/** Bytes a connection holds back for its window at most; past it they are written at once. */
const EARLY_FLUSH_BYTES = 64 * 1024

const CRLF = Buffer.from('\r\n')

// The frames of a flush are usually the same for every connection in it (a fan-out): the chunk
// built for one is kept and reused while the next connection holds the same frames (same bytes).
let memoFrames: SseFrame[] = []
let memoChunk: Buffer | null = null

/** The frames as one HTTP/1.1 chunk (one frame: its own shared chunk, no copy). */
function chunkOf (frames: SseFrame[], bytes: number): Buffer {
  if (frames.length === 1) return frames[0]!.chunked
  if (memoChunk !== null && sameFrames(frames, memoFrames)) return memoChunk
  const size = bytes.toString(16)
  const chunk = Buffer.allocUnsafe(size.length + 2 + bytes + 2)
  let offset = chunk.write(size, 0, 'latin1')
  offset += CRLF.copy(chunk, offset)
  for (const frame of frames) offset += frame.bytes.copy(chunk, offset)
  CRLF.copy(chunk, offset)
  memoFrames = frames.slice()
  memoChunk = chunk
  return chunk
}

function sameFrames (a: SseFrame[], b: SseFrame[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * HTTP/1.1: the response head declares chunked encoding, then the frames a connection holds go to
 * its socket as one chunk per write (see `WriteBatch` for when). `end()` goes back through the
 * response, which writes the last chunk and keeps keep-alive semantics intact.
 */
class SocketWriter implements FrameWriter, BatchedWriter {
  /** Frames held for the next write, and their size in bytes. */
  private held: SseFrame[] = []
  private heldBytes = 0
  /** In a batch list: a write is coming. */
  private scheduled = false
  /** The socket holds the response head until the first write (one syscall for both). */
  private socketCorked = false

  constructor (private readonly response: RawResponse, private readonly socket: RawSocket, private readonly batch: WriteBatch, private readonly onDrain: () => void) {
    socket.on('drain', onDrain)
  }

  /** Bytes the socket could not hand to the kernel yet; frames held for the window are not backlog. */
  get queuedBytes (): number {
    return this.socket.writableLength
  }

  write (frame: SseFrame): void {
    this.held.push(frame)
    this.heldBytes += frame.bytes.length
    if (!this.scheduled) {
      this.scheduled = true
      this.batch.schedule(this)
    } else if (this.heldBytes >= EARLY_FLUSH_BYTES) {
      // A burst does not wait for the window past this.
      this.writeHeld()
    }
  }

  /** @internal A new stream: the head waits in the socket and leaves with the first frames, at the end of this tick. */
  open (): void {
    this.socket.cork()
    this.socketCorked = true
    this.scheduled = true
    this.batch.open(this)
  }

  /** @internal */
  flush (): void {
    this.scheduled = false
    this.writeHeld()
    if (this.socketCorked) {
      this.socketCorked = false
      this.socket.uncork()
    }
  }

  private writeHeld (): void {
    if (this.heldBytes === 0) return
    const chunk = chunkOf(this.held, this.heldBytes)
    this.held.length = 0
    this.heldBytes = 0
    this.socket.write(chunk)
  }

  /** What it holds leaves now, before the response's last chunk: an end never waits for the window. */
  end (): void {
    this.writeHeld()
    this.response.end()
  }

  destroy (): void {
    this.dropHeld()
    this.socket.destroy()
  }

  dispose (): void {
    this.dropHeld()
    this.socket.removeListener('drain', this.onDrain)
  }

  private dropHeld (): void {
    this.held.length = 0
    this.heldBytes = 0
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
    writer.open()
    response.flushHeaders()
    return writer
  }
  // Connection-specific headers are forbidden in HTTP/2.
  if (request.httpVersionMajor === 1) head.connection = 'keep-alive'
  response.writeHead(200, head)
  return new ResponseWriter(response, onDrain)
}
