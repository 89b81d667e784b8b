/**
 * SSE wire format (WHATWG HTML, "Server-sent events"): `field: value` lines, a blank line ends an event.
 * A value cannot hold a line break, so multi-line data becomes several `data:` lines.
 */

const LINE_BREAK = /\r\n|\r|\n/
const CRLF = Buffer.from('\r\n')

/**
 * One encoded event, shared by every client it is sent to. `chunked` is the same bytes
 * framed as one HTTP/1.1 chunk, built on first use, so a fan-out writes one ready
 * Buffer per client instead of letting node:http frame (and allocate) for each one.
 */
export class SseFrame {
  private chunkedBytes: Buffer | null = null

  /** `eventId`: the frame's `id:`, if it has one (a conflated backlog is flushed in id order). */
  constructor (readonly bytes: Buffer, readonly eventId?: number) {}

  get chunked (): Buffer {
    this.chunkedBytes ??= Buffer.concat([Buffer.from(`${this.bytes.length.toString(16)}\r\n`), this.bytes, CRLF])
    return this.chunkedBytes
  }
}

export function encodeRetry (retryMs: number): SseFrame {
  return new SseFrame(Buffer.from(`retry: ${retryMs}\n\n`))
}

export function encodeComment (text: string): SseFrame {
  return new SseFrame(Buffer.from(`: ${text}\n\n`))
}

/** An event frame. `data` is sent as is (JSON has no raw line breaks, so it stays on one line). */
export function encodeEvent (event: string, data: string, id?: number): SseFrame {
  const idLine = id === undefined ? '' : `id: ${id}\n`
  const dataLines = LINE_BREAK.test(data) ? data.split(LINE_BREAK).map((line) => `data: ${line}\n`).join('') : `data: ${data}\n`
  return new SseFrame(Buffer.from(`${idLine}event: ${event}\n${dataLines}\n`), id)
}

/** `Last-Event-ID` as a non-negative integer, or null for anything else (absent, malformed, too large). */
export function parseLastEventId (header: string | string[] | undefined): number | null {
  if (typeof header !== 'string' || !/^\d{1,15}$/.test(header.trim())) return null
  return Number(header.trim())
}
