/**
 * SSE wire format (WHATWG HTML, "Server-sent events"): `field: value` lines, a blank line ends an event.
 * A value cannot hold a line break, so multi-line data becomes several `data:` lines.
 * Frames are built once as Buffers so that every client of a fan-out writes the same bytes.
 */

const LINE_BREAK = /\r\n|\r|\n/

export function encodeRetry (retryMs: number): Buffer {
  return Buffer.from(`retry: ${retryMs}\n\n`)
}

/** An event frame. `data` is sent as is (JSON has no raw line breaks, so it stays on one line). */
export function encodeEvent (event: string, data: string, id?: number | string): Buffer {
  const idLine = id === undefined ? '' : `id: ${id}\n`
  const dataLines = LINE_BREAK.test(data) ? data.split(LINE_BREAK).map((line) => `data: ${line}\n`).join('') : `data: ${data}\n`
  return Buffer.from(`${idLine}event: ${event}\n${dataLines}\n`)
}

/** `Last-Event-ID` as a non-negative integer, or null for anything else (absent, malformed, too large). */
export function parseLastEventId (header: string | string[] | undefined): number | null {
  if (typeof header !== 'string' || !/^\d{1,15}$/.test(header.trim())) return null
  return Number(header.trim())
}

export function encodeComment (text: string): Buffer {
  return Buffer.from(`: ${text}\n\n`)
}
