// Shared by every bench server: the tiny contract the load client and the orchestrator rely on.
//   GET  <stream path>                 an SSE stream (the path is part of the server's self-description)
//   POST /broadcast?events=E&size=S    E events, data `{"seq":i,"pad":"xxx…"}` of about S bytes, seq 0..E-1
//   GET  /stats[?gc=1]                 { clients, cpu, rss, ... } (gc=1 runs a full GC first when --expose-gc is on)
// Each server prints one JSON line `{"port":N,"path":…,"name":…}` on stdout when it listens.

let unhandled = 0
process.on('unhandledRejection', () => { unhandled++ })

// The orchestrator keeps our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()

/** `{ events, size }` from a request URL, or null when they are missing or out of range. */
export function parseBroadcast (url) {
  const query = new URLSearchParams(url.slice(url.indexOf('?') + 1))
  const events = Number(query.get('events'))
  const size = Number(query.get('size'))
  if (!Number.isInteger(events) || events < 1 || events > 1e6) return null
  if (!Number.isInteger(size) || size < 0 || size > 1e6) return null
  return { events, size }
}

/**
 * One sample object per event, built before the timed fan-out loop: `{ seq: i, pad }` whose JSON is
 * about `size` bytes (`{"seq":0,"pad":""}` is 18 bytes with a 1-digit seq; the pad is one shared string).
 */
export function buildSamples (events, size) {
  const pad = 'x'.repeat(Math.max(0, size - 20))
  const samples = new Array(events)
  for (let i = 0; i < events; i++) samples[i] = { seq: i, pad }
  return samples
}

/** The SSE frame the plain node:http servers write (same fields as the libraries produce). */
export function sseFrame (id, json) {
  return `id: ${id}\nevent: metrics\ndata: ${json}\n\n`
}

export function stats (url, clients, extra = {}) {
  if (url.includes('gc=1') && typeof globalThis.gc === 'function') {
    globalThis.gc()
    globalThis.gc()
  }
  return { clients, cpu: process.cpuUsage(), rss: process.memoryUsage().rss, unhandledRejections: unhandled, ...extra }
}

export function announce (port, info) {
  process.stdout.write(JSON.stringify({ port, ...info }) + '\n')
}
