// Shared by every bench server: the tiny contract the load client and the orchestrator rely on.
//   GET  <stream path>                 an SSE stream (the path is part of the server's self-description)
//   POST /broadcast?events=E&size=S[&mode=macrotask|burst|rate][&interval=MS]
//                                      E events, data `{"seq":i,"t":<push time>,"pad":"xxx…"}` of about S bytes, seq
//                                      0..E-1; answers once the last one was pushed (see `trigger` below)
//   GET  /stats[?gc=1][&loop=start|stop] { clients, cpu, rss, ... } (gc=1 runs a full GC first when --expose-gc is on;
//                                      loop=start starts measuring the event-loop delay, loop=stop ends it and adds
//                                      loopDelay { p50Ms, p99Ms, maxMs } of the time in between)
//   GET  /clock                        { now }: this process's high-resolution epoch time in ms (latency clock offset)
// Each server prints one JSON line `{"port":N,"path":…,"name":…}` on stdout when it listens.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

let unhandled = 0
process.on('unhandledRejection', () => { unhandled++ })

// The orchestrator keeps our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()

export const epochNow = () => performance.timeOrigin + performance.now()

const MODES = ['macrotask', 'burst', 'rate']

/** `{ events, size, mode, intervalMs }` from a request URL, or null when they are missing or out of range. */
export function parseBroadcast (url) {
  const query = new URLSearchParams(url.slice(url.indexOf('?') + 1))
  const events = Number(query.get('events'))
  const size = Number(query.get('size'))
  const mode = query.get('mode') ?? 'macrotask'
  const intervalMs = Number(query.get('interval') ?? 20)
  if (!Number.isInteger(events) || events < 1 || events > 1e6) return null
  if (!Number.isInteger(size) || size < 0 || size > 1e6) return null
  if (!MODES.includes(mode)) return null
  if (!(intervalMs > 0 && intervalMs <= 60000)) return null
  return { events, size, mode, intervalMs }
}

/**
 * Pushes `params.events` samples through `push(sample, i)` and resolves once the last one was pushed. A sample is
 * `{ seq: i, t, pad }` whose JSON is about `size` bytes; `t` (epoch ms, sub-millisecond) is taken right before
 * `push`, so the latency the load client measures includes the implementation's serialisation and writes.
 * - `macrotask` (default): one sample per macrotask, a `setImmediate` chain (push i, then schedule i + 1), the way
 *   an agent transport delivers samples (one message per socket read);
 * - `burst`: every sample in one synchronous loop (not how transports deliver: socket corking then carries the
 *   whole burst in one write);
 * - `rate`: one sample every `intervalMs`, by timer, from a fixed schedule (no drift).
 */
export function trigger (params, push) {
  const { events, size, mode, intervalMs } = params
  // `{"seq":0,"t":1750000000000.123,"pad":""}` is about 40 bytes.
  const pad = 'x'.repeat(Math.max(0, size - 40))
  const one = (i) => push({ seq: i, t: epochNow(), pad }, i)
  if (mode === 'burst') {
    for (let i = 0; i < events; i++) one(i)
    return Promise.resolve()
  }
  return new Promise((resolve, reject) => {
    const start = performance.now()
    let i = 0
    const step = () => {
      try {
        one(i++)
      } catch (err) {
        return reject(err)
      }
      if (i >= events) return resolve()
      if (mode === 'macrotask') setImmediate(step)
      else setTimeout(step, Math.max(0, start + i * intervalMs - performance.now()))
    }
    step()
  })
}

/** The SSE frame the plain node:http servers write (same fields as the libraries produce). */
export function sseFrame (id, json) {
  return `id: ${id}\nevent: metrics\ndata: ${json}\n\n`
}

let loopDelay = null

export function stats (url, clients, extra = {}) {
  if (url.includes('gc=1') && typeof globalThis.gc === 'function') {
    globalThis.gc()
    globalThis.gc()
  }
  const out = { clients, cpu: process.cpuUsage(), rss: process.memoryUsage().rss, unhandledRejections: unhandled }
  if (url.includes('loop=start')) {
    loopDelay?.disable()
    loopDelay = monitorEventLoopDelay({ resolution: 10 })
    loopDelay.enable()
  } else if (url.includes('loop=stop') && loopDelay !== null) {
    loopDelay.disable()
    out.loopDelay = { p50Ms: loopDelay.percentile(50) / 1e6, p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 }
    loopDelay = null
  }
  return { ...out, ...extra }
}

export function clock () {
  return { now: epochNow() }
}

export function announce (port, info) {
  process.stdout.write(JSON.stringify({ port, ...info }) + '\n')
}
