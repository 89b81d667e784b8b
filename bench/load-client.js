// Load client, run as its own process by bench/run.js. Commands arrive as JSON lines on stdin
// (`{ "id": n, "cmd": …, … }`), answers leave as JSON lines on stdout (`{ "id": n, "ok": true, … }`).
//
//   connect   { port, path, clients, parallel }  opens `clients` raw-socket SSE connections (at most `parallel`
//                                                waiting for their head at once); answers once every one has its
//                                                `200` head: { ms, connectsPerSec }
//   broadcast { port, events, size, mode, intervalMs, timeoutMs }
//                                                POSTs /broadcast (mode macrotask, burst or rate; see
//                                                servers/common.js) and waits until every client has seq 0..E-1,
//                                                each exactly once and in order: { ms, eventsPerSec, latency } or
//                                                ok:false; latency = receipt - push time (`t` in the sample, on the
//                                                server's clock mapped to ours by `clock`), p50/p99/max over every
//                                                event of every client
//   clock     { port }                           clock offset to the server (min-RTT of GET /clock): { offsetMs, rttMs }
//   close     {}                                 destroys every connection
//   churn     { port, path, cycles, parallel }   connect, wait for the head, disconnect; `cycles` times, `parallel`
//                                                at once: { ms, cyclesPerSec }
//   stormArm  {}                                 from now on a client's first sample may have any seq (a stream
//                                                joined while samples flow); each later one must be the previous + 1
//   storm     { port, path, spreadMs, retryMs, timeoutMs }
//                                                waits until every connected client has a sample, destroys them
//                                                all at once and reconnects as many, spread evenly over `spreadMs`
//                                                (a refused or reset attempt retries after `retryMs`); answers once
//                                                every one has its 200 head and then a sample: { allConnectedMs,
//                                                allStreamingMs, perClient p50/p99/max, errors, latency (of the
//                                                samples after each client's first) }
//
// The fleet scenario (bench/run.js --scenarios=fleet; see bench/fleet-layout.js) parses whole SSE frames instead
// (HTTP/1.1 chunked decoding, then `id:`/`event:`/`data:` lines, `data` as JSON):
//   fleetConnect { port, mode, agents, conns, perConn, intervalSeconds, parallel }
//                                                mode 'fleet': `conns` fleet connections of `perConn` agents each;
//                                                mode 'single': one single-agent connection per (fleet connection,
//                                                agent) pair. Answers once every connection has its head: { ms }
//   fleetClock   { port }                        clock offset to the server (min-RTT of GET /clock): { offsetMs, rttMs }
//   fleetWindow  { port, ms }                    GET /stats, count for `ms`, GET /stats: delivered samples, server
//                                                CPU, latency push -> receipt (p50/p99/max), client and machine CPU
//   fleetCheck   { pushed }                      every (connection, agent) got every sample up to the agent's last:
//                                                { ok } or ok:false with the first problem
// Every metrics frame is checked as it arrives: its id is above the connection's previous id, its agent is one the
// connection watches (and, on a fleet connection, already had its `status` event), and its sample counter `n` is the
// previous one of that (connection, agent) plus one (nothing lost, duplicated or conflated). The first problem fails
// the run.
//
// Frames are counted by scanning the bytes for `"seq":`, the decimal number after it and the push time after that
// (`,"t":<number>`), so the transfer encoding (chunk-size lines between frames) and the SSE field layout of each
// library do not matter. The scan copes with a pattern or number split across reads. All sockets share one read buffer (`onread`), so a read
// allocates nothing but a view; only a pattern straddling two reads copies a few bytes.
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import readline from 'node:readline'
import { request } from 'undici'
import { agentId, fleetLayout } from './fleet-layout.js'

const SEQ = Buffer.from('"seq":')
const T_FIELD = Buffer.from(',"t":')
const HEAD_END = Buffer.from('\r\n\r\n')
const READ_BUFFER = Buffer.allocUnsafe(1 << 20)

/** Every open connection of the current `connect`. */
let conns = []

/** The running broadcast: what each client must receive and how many are still missing something. */
const run = {
  armed: false,
  events: 0,
  remaining: 0,
  failed: 0,
  firstError: null,
  endTime: 0,
  endCpu: null,
  onSettled: null,
  latencies: new Float64Array(1 << 16), // ms, push -> receipt, of every event while armed
  latencyCount: 0,
  storm: false // stormArm: a client's first seq is whatever flows when it joins
}
/** Server clock - our clock (ms), from the `clock` command. */
let offsetMs = 0
const epochNow = () => performance.timeOrigin + performance.now()

function addLatency (ms) {
  if (run.latencyCount === run.latencies.length) {
    const grown = new Float64Array(run.latencies.length * 2)
    grown.set(run.latencies)
    run.latencies = grown
  }
  run.latencies[run.latencyCount++] = ms
}

function latencySummary () {
  const sorted = run.latencies.slice(0, run.latencyCount).sort()
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1] : null, count: sorted.length }
}

class Conn {
  constructor (index) {
    this.index = index
    this.socket = null
    this.head = null // bytes of an incomplete response head
    this.status = 0 // HTTP status once the head is complete
    this.next = 0 // next expected seq (-1 in a storm: whatever comes first)
    this.partial = null // bytes of a `"seq":<digits>` split across reads
    this.error = null
    this.onHead = null
    this.onFail = null
    this.closing = false
    this.firstAt = null // storm: when the first sample arrived (performance.now())
    this.firstTry = 0 // storm: when the first connection attempt started
  }
}

function fail (conn, message) {
  if (conn.error !== null) return
  conn.error = message
  if (run.storm) {
    storm.failed++
    storm.firstError ??= `client ${conn.index}: ${message}`
    return
  }
  if (run.armed) {
    run.failed++
    if (run.firstError === null) run.firstError = `client ${conn.index}: ${message}`
    settleIfDone()
  }
}

function settleIfDone () {
  if (run.armed && run.remaining === run.failed && run.onSettled !== null) {
    run.endTime = performance.now()
    run.endCpu = process.cpuUsage()
    const settled = run.onSettled
    run.onSettled = null
    settled()
  }
}

function record (conn, seq, t, now) {
  if (conn.error !== null) return
  if (run.storm) return stormRecord(conn, seq, t, now)
  if (!run.armed) return fail(conn, `seq ${seq} received outside a broadcast`)
  if (seq !== conn.next) {
    return fail(conn, conn.next >= run.events
      ? `extra seq ${seq} after all ${run.events} events`
      : `expected seq ${conn.next}, got ${seq} (${seq < conn.next ? 'duplicate or disorder' : 'missing ' + (seq - conn.next)})`)
  }
  conn.next++
  addLatency(now + offsetMs - t)
  if (conn.next === run.events) {
    run.remaining--
    settleIfDone()
  }
}

/** Parses the decimal number at `start`; returns [value, end] or null when the digits may go on past the end. */
function number (buf, start) {
  let value = 0
  let j = start
  const end = buf.length
  while (j < end) {
    const c = buf[j]
    if (c < 48 || c > 57) break
    value = value * 10 + c - 48
    j++
  }
  if (j === end) return null
  if (j === start) return [-1, j]
  return [value, j]
}

/**
 * Parses `<seq>,"t":<push time>` at `start` (just after `"seq":`): [seq, t, end], null when the bytes may go on
 * past the end of `buf`, or a string saying what is malformed.
 */
function sample (buf, start) {
  const seq = number(buf, start)
  if (seq === null) return null
  if (seq[0] < 0) return 'malformed "seq": without a number'
  let j = seq[1]
  for (let k = 0; k < T_FIELD.length; k++, j++) {
    if (j === buf.length) return null
    if (buf[j] !== T_FIELD[k]) return 'sample without its push time ("t" after "seq")'
  }
  const from = j
  while (j < buf.length && ((buf[j] >= 48 && buf[j] <= 57) || buf[j] === 46)) j++
  if (j === buf.length) return null
  if (j === from) return 'malformed "t": without a number'
  return [seq[0], Number(buf.latin1Slice(from, j)), j]
}

/** Longest proper prefix of `"seq":` that `buf` ends with (0..5). */
function danglingPrefix (buf) {
  for (let length = Math.min(SEQ.length - 1, buf.length); length > 0; length--) {
    let match = true
    for (let k = 0; k < length; k++) {
      if (buf[buf.length - length + k] !== SEQ[k]) { match = false; break }
    }
    if (match) return length
  }
  return 0
}

function scanBody (conn, buf, now) {
  let pos = 0
  if (conn.partial !== null) {
    // Finish a pattern or number that began in an earlier read (at most a few dozen bytes are copied).
    const carried = conn.partial
    conn.partial = null
    const joined = Buffer.concat([carried, buf.subarray(0, 64)])
    const i = joined.indexOf(SEQ)
    if (i !== -1 && i < carried.length) {
      const parsed = sample(joined, i + SEQ.length)
      if (parsed === null) {
        if (joined.length === carried.length + buf.length) {
          conn.partial = Buffer.from(joined.subarray(i))
          return
        }
        return fail(conn, 'unparseable seq or t (too many digits)')
      }
      if (typeof parsed === 'string') return fail(conn, parsed)
      record(conn, parsed[0], parsed[1], now)
      if (conn.error !== null) return
      pos = parsed[2] - carried.length
    } else if (i === -1 && joined.length === carried.length + buf.length) {
      // The whole read was too short to complete the pattern.
      const keep = danglingPrefix(joined)
      if (keep > 0) conn.partial = Buffer.from(joined.subarray(joined.length - keep))
      return
    }
  }
  while (true) {
    const i = buf.indexOf(SEQ, pos)
    if (i === -1) {
      const keep = danglingPrefix(buf)
      if (keep > 0 && buf.length - keep >= pos) conn.partial = Buffer.from(buf.subarray(buf.length - keep))
      return
    }
    const parsed = sample(buf, i + SEQ.length)
    if (parsed === null) {
      conn.partial = Buffer.from(buf.subarray(i))
      return
    }
    if (typeof parsed === 'string') return fail(conn, parsed)
    record(conn, parsed[0], parsed[1], now)
    if (conn.error !== null) return
    pos = parsed[2]
  }
}

/**
 * Reads the response head off the first bytes of a connection: the body bytes that follow it, or
 * null while the head is incomplete or when it was refused (reported through conn.onFail).
 * `requireChunked`: the fleet scenario decodes the chunked framing itself.
 */
function readHead (conn, buf, requireChunked = false) {
  if (conn.status !== 0) return buf
  const head = conn.head === null ? buf : Buffer.concat([conn.head, buf])
  const end = head.indexOf(HEAD_END)
  if (end === -1) {
    conn.head = Buffer.from(head)
    if (conn.head.length > 16384) conn.onFail?.('response head too large')
    return null
  }
  conn.head = null
  const headText = head.toString('latin1', 0, end)
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(headText)
  conn.status = match ? Number(match[1]) : -1
  if (conn.status !== 200) {
    conn.onFail?.(`HTTP status ${match ? conn.status : '?'}: ${headText.split('\r\n')[0]}`)
    return null
  }
  if (requireChunked && !/\r\ntransfer-encoding: chunked/i.test(headText)) {
    conn.onFail?.('response is not chunked')
    return null
  }
  conn.onHead?.()
  const body = head.subarray(end + HEAD_END.length)
  return body.length === 0 ? null : body
}

function onRead (conn, nread, buffer) {
  const buf = readHead(conn, buffer.subarray(0, nread))
  if (buf !== null) scanBody(conn, buf, epochNow())
}

// `read` and `failWith` are the scenario's frame parser and failure report (fan-out or fleet).
function open (port, path, conn, onHead, onFail, read = onRead, failWith = fail) {
  conn.onHead = onHead
  conn.onFail = onFail
  const socket = net.connect({
    port,
    host: '127.0.0.1',
    noDelay: true,
    onread: { buffer: READ_BUFFER, callback: (nread, buffer) => { read(conn, nread, buffer) } }
  })
  conn.socket = socket
  socket.on('connect', () => {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`)
  })
  socket.on('error', (err) => {
    if (conn.status === 0) conn.onFail?.(err.code ?? err.message)
    else failWith(conn, `socket error ${err.code ?? err.message}`)
  })
  socket.on('close', () => {
    if (conn.closing) return
    if (conn.status === 0) conn.onFail?.('closed before the response head')
    else failWith(conn, 'connection closed by the server')
  })
  return socket
}

function connectAll ({ port, path, clients, parallel }) {
  return new Promise((resolve) => {
    const start = performance.now()
    let started = 0
    let headed = 0
    let done = false
    const finish = (result) => {
      if (done) return
      done = true
      resolve(result)
    }
    const launch = () => {
      if (done || started >= clients) return
      const conn = new Conn(conns.length)
      conns.push(conn)
      started++
      open(port, path, conn, () => {
        headed++
        if (headed === clients) {
          const ms = performance.now() - start
          finish({ ok: true, clients, ms, connectsPerSec: clients / (ms / 1000) })
        } else {
          launch()
        }
      }, (why) => finish({ ok: false, error: `connect ${conn.index}: ${why}` }))
    }
    for (let k = 0; k < Math.min(parallel, clients); k++) launch()
  })
}

async function broadcast ({ port, events, size, mode = 'macrotask', intervalMs = 20, timeoutMs }) {
  const broken = conns.find((conn) => conn.error !== null)
  if (broken) return { ok: false, error: `client ${broken.index} already failed: ${broken.error}` }
  for (const conn of conns) conn.next = 0
  Object.assign(run, { armed: true, storm: false, events, remaining: conns.length, failed: 0, firstError: null, latencyCount: 0 })
  const settled = new Promise((resolve) => { run.onSettled = resolve })
  let timer
  const timedOut = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs) })
  const startCpu = process.cpuUsage()
  const start = performance.now()
  let response
  try {
    const res = await request(`http://127.0.0.1:${port}/broadcast?events=${events}&size=${size}&mode=${mode}&interval=${intervalMs}`, { method: 'POST' })
    response = { status: res.statusCode, body: await res.body.text(), ms: performance.now() - start }
  } catch (err) {
    response = { status: 0, body: String(err?.message ?? err) }
  }
  if (response.status !== 200) {
    clearTimeout(timer)
    run.armed = false
    return { ok: false, error: `POST /broadcast answered ${response.status}: ${response.body.slice(0, 200)}` }
  }
  const outcome = await Promise.race([settled, timedOut])
  clearTimeout(timer)
  if (outcome === 'timeout') {
    run.armed = false
    run.onSettled = null
    const behind = conns.filter((conn) => conn.error === null && conn.next < events)
    const example = behind[0] ? `client ${behind[0].index} at seq ${behind[0].next}/${events}` : ''
    return { ok: false, timeout: true, error: `TIMEOUT after ${timeoutMs} ms: ${behind.length} of ${conns.length} clients incomplete (${example}), ${run.failed} failed${run.firstError ? ': ' + run.firstError : ''}` }
  }
  // Give duplicates or stray frames a moment to show up before declaring the run complete.
  await new Promise((resolve) => setTimeout(resolve, 150))
  run.armed = false
  if (run.failed > 0) return { ok: false, error: `${run.failed} of ${conns.length} clients lost or reordered events; first: ${run.firstError}` }
  const ms = run.endTime - start
  const clientCpuMs = (run.endCpu.user + run.endCpu.system - startCpu.user - startCpu.system) / 1000
  return {
    ok: true,
    ms,
    delivered: conns.length * events,
    eventsPerSec: (conns.length * events) / (ms / 1000),
    clientCpuPct: (100 * clientCpuMs) / ms,
    responseMs: response.ms,
    server: response.body,
    latency: latencySummary()
  }
}

function closeAll () {
  for (const conn of [...conns, ...fleetConns]) {
    conn.closing = true
    conn.socket?.destroy()
  }
  conns = []
  fleetConns = []
  run.storm = false
  return { ok: true }
}

function churn ({ port, path, cycles, parallel }) {
  return new Promise((resolve) => {
    const start = performance.now()
    let started = 0
    let finished = 0
    let done = false
    const cycle = () => {
      if (done || started >= cycles) return
      started++
      const conn = new Conn(started)
      const socket = open(port, path, conn, () => {
        conn.closing = true
        socket.destroy()
        finished++
        if (finished === cycles) {
          done = true
          const ms = performance.now() - start
          resolve({ ok: true, cycles, ms, cyclesPerSec: cycles / (ms / 1000) })
        } else {
          cycle()
        }
      }, (why) => {
        conn.closing = true
        socket.destroy()
        if (done) return
        done = true
        resolve({ ok: false, error: `cycle ${conn.index}: ${why}` })
      })
    }
    for (let k = 0; k < Math.min(parallel, cycles); k++) cycle()
  })
}

// ---------------------------------------------------------------------------------------------------------
// Reconnect storm: every client drops at once and reconnects within `spreadMs` while samples flow.

const storm = { failed: 0, firstError: null, onFirst: null }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function stormArm () {
  run.armed = false
  run.storm = true
  run.latencyCount = 0
  Object.assign(storm, { failed: 0, firstError: null, onFirst: null })
  for (const conn of conns) {
    conn.next = -1
    conn.firstAt = null
  }
  return { ok: true }
}

function stormRecord (conn, seq, t, now) {
  if (conn.next !== -1 && seq !== conn.next) {
    return fail(conn, `expected seq ${conn.next}, got ${seq} (${seq < conn.next ? 'duplicate or disorder' : 'missing ' + (seq - conn.next)})`)
  }
  conn.next = seq + 1
  if (conn.firstAt === null) {
    // Not counted in the latency: a server may replay its latest sample to a client that joins (however old).
    conn.firstAt = performance.now()
    storm.onFirst?.(conn)
  } else {
    addLatency(now + offsetMs - t)
  }
}

async function stormRun ({ port, path, spreadMs, retryMs, timeoutMs }) {
  if (!run.storm) return { ok: false, error: 'stormArm first' }
  const n = conns.length
  const deadline = performance.now() + timeoutMs
  // The streams flow: every client has had a sample.
  while (conns.some((conn) => conn.firstAt === null && conn.error === null)) {
    if (performance.now() > deadline) return { ok: false, timeout: true, error: `before the storm: ${conns.filter((conn) => conn.firstAt === null).length} of ${n} clients never got a sample` }
    await sleep(10)
  }
  if (storm.failed > 0) return { ok: false, error: `before the storm: ${storm.failed} clients failed; first: ${storm.firstError}` }
  const t0 = performance.now()
  for (const conn of conns) {
    conn.closing = true
    conn.socket.destroy()
  }
  conns = []
  run.latencyCount = 0
  return new Promise((resolve) => {
    let launched = 0
    let headed = 0
    let streaming = 0
    let attempts = 0
    let lastHead = 0
    let lastStream = 0
    let done = false
    const errors = {}
    const perClient = new Float64Array(n) // ms from the client's first attempt to its first sample
    const finish = (result) => {
      if (done) return
      done = true
      clearTimeout(timer)
      storm.onFirst = null
      resolve(result)
    }
    const timer = setTimeout(() => finish({
      ok: false,
      timeout: true,
      error: `storm: after ${timeoutMs} ms ${headed} of ${n} clients had their head and ${streaming} a sample (${attempts} attempts, errors ${JSON.stringify(errors)})` +
        (storm.failed > 0 ? `; ${storm.failed} failed, first: ${storm.firstError}` : '')
    }), timeoutMs)
    storm.onFirst = (conn) => {
      perClient[conn.index] = conn.firstAt - conn.firstTry
      streaming++
      lastStream = conn.firstAt
      if (streaming < n) return
      if (storm.failed > 0) return finish({ ok: false, error: `storm: ${storm.failed} clients lost or reordered samples or were closed; first: ${storm.firstError}` })
      const sorted = perClient.sort()
      finish({
        ok: true,
        clients: n,
        attempts,
        errors,
        allConnectedMs: lastHead - t0,
        allStreamingMs: lastStream - t0,
        perClient: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[n - 1] },
        latency: latencySummary()
      })
    }
    const attempt = (conn) => {
      attempts++
      Object.assign(conn, { status: 0, head: null, partial: null, next: -1, closing: false })
      open(port, path, conn, () => {
        headed++
        lastHead = performance.now()
      }, (why) => {
        if (conn.closing) return
        conn.closing = true
        conn.socket.destroy()
        errors[why] = (errors[why] ?? 0) + 1
        if (!done) setTimeout(() => attempt(conn), retryMs)
      })
    }
    const tick = () => {
      if (done) return
      const due = Math.min(n, Math.floor(((performance.now() - t0) / spreadMs) * n) + 1)
      while (launched < due) {
        const conn = new Conn(launched++)
        conn.next = -1
        conn.firstTry = performance.now()
        conns.push(conn)
        attempt(conn)
      }
      if (launched < n) setTimeout(tick, 5)
    }
    tick()
  })
}

// ---------------------------------------------------------------------------------------------------------
// Fleet scenario: full SSE parsing, per-connection id order, per-(connection, agent) sample continuity, latency.

/** Every open connection of the current `fleetConnect`. */
let fleetConns = []
/** What all fleet-scenario connections received, and the problems found. */
const fleet = {
  delivered: 0, // metrics frames
  statuses: 0, // status frames
  measuring: false,
  latencies: [], // ms, push -> receipt, while measuring
  failed: 0,
  firstError: null
}
class FleetConn {
  constructor (index, mode, agents) {
    this.index = index
    this.mode = mode
    this.socket = null
    this.head = null
    this.status = 0
    this.closing = false
    this.onHead = null
    this.onFail = null
    this.error = null
    // fleet: agent id -> last n (-1 before its first sample); single: the one agent
    this.lastN = new Map(agents.map((id) => [id, -1]))
    this.agentId = mode === 'single' ? agents[0] : null
    this.statusSeen = mode === 'fleet' ? new Set() : null // agents whose status arrived (before any of their samples)
    this.lastId = -1
    // chunked decoding: bytes left in the current chunk, CRLF bytes left after it, the size line being read
    this.chunkLeft = 0
    this.crlfLeft = 0
    this.size = 0
    this.sizeDigits = 0
    this.text = '' // SSE text not yet ending in a blank line
  }
}

function fleetFail (conn, message) {
  if (conn.error !== null) return
  conn.error = message
  fleet.failed++
  if (fleet.firstError === null) fleet.firstError = `${conn.mode} connection ${conn.index}: ${message}`
}

function fleetOnRead (conn, nread, buffer) {
  const buf = readHead(conn, buffer.subarray(0, nread), true)
  if (buf === null || conn.error !== null) return
  decodeChunked(conn, buf)
  if (conn.error === null) parseEvents(conn, epochNow())
}

/** HTTP/1.1 chunked transfer decoding: appends the chunks' bytes to conn.text. */
function decodeChunked (conn, buf) {
  let pos = 0
  const length = buf.length
  while (pos < length) {
    if (conn.chunkLeft > 0) {
      const take = Math.min(conn.chunkLeft, length - pos)
      conn.text += buf.latin1Slice(pos, pos + take)
      conn.chunkLeft -= take
      pos += take
      if (conn.chunkLeft === 0) conn.crlfLeft = 2
      continue
    }
    const c = buf[pos++]
    if (conn.crlfLeft > 0) {
      if (c !== (conn.crlfLeft === 2 ? 13 : 10)) return fleetFail(conn, 'chunk not followed by CRLF')
      conn.crlfLeft--
      continue
    }
    if (c === 13) continue
    if (c === 10) {
      if (conn.sizeDigits === 0) return fleetFail(conn, 'empty chunk size line')
      if (conn.size === 0) return fleetFail(conn, 'the response ended (last chunk)')
      conn.chunkLeft = conn.size
      conn.size = 0
      conn.sizeDigits = 0
      continue
    }
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1
    if (digit < 0 || conn.sizeDigits >= 8) return fleetFail(conn, `bad chunk size byte ${c}`)
    conn.size = conn.size * 16 + digit
    conn.sizeDigits++
  }
}

/** Handles every complete event (text up to a blank line) in conn.text. */
function parseEvents (conn, now) {
  const text = conn.text
  let start = 0
  while (true) {
    const end = text.indexOf('\n\n', start)
    if (end === -1) break
    handleEvent(conn, text.slice(start, end), now)
    if (conn.error !== null) return
    start = end + 2
  }
  if (start > 0) conn.text = text.slice(start)
}

function handleEvent (conn, block, now) {
  let id = null
  let event = 'message'
  let data = null
  for (const line of block.split('\n')) {
    if (line === '' || line.charCodeAt(0) === 58 /* : comment */) continue
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    const value = colon === -1 ? '' : line.slice(line.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1)
    if (field === 'id') id = value
    else if (field === 'event') event = value
    else if (field === 'data') data = data === null ? value : data + '\n' + value
  }
  if (data === null) return // retry:, comments (heartbeats)
  if (event === 'status') {
    if (conn.mode !== 'fleet') return fleetFail(conn, 'status event on a single-agent connection')
    if (id !== null) return fleetFail(conn, 'status event with an id')
    let status
    try {
      status = JSON.parse(data)
    } catch {
      return fleetFail(conn, `status data is not JSON: ${data.slice(0, 80)}`)
    }
    if (!conn.lastN.has(status.agent_id)) return fleetFail(conn, `status of an agent it does not watch: ${status.agent_id}`)
    conn.statusSeen.add(status.agent_id)
    fleet.statuses++
    return
  }
  if (event !== 'metrics') return fleetFail(conn, `unexpected event ${event}: ${data.slice(0, 120)}`)
  if (id === null || !/^\d+$/.test(id)) return fleetFail(conn, `metrics event without a decimal id (${id})`)
  const eventId = Number(id)
  if (eventId <= conn.lastId) return fleetFail(conn, `id ${eventId} after id ${conn.lastId}`)
  conn.lastId = eventId
  let parsed
  try {
    parsed = JSON.parse(data)
  } catch {
    return fleetFail(conn, `metrics data is not JSON: ${data.slice(0, 80)}`)
  }
  let agent
  let sample
  if (conn.mode === 'fleet') {
    agent = parsed.agent_id
    sample = parsed.metrics
    if (!conn.lastN.has(agent)) return fleetFail(conn, `sample of an agent it does not watch: ${agent}`)
    if (!conn.statusSeen.has(agent)) return fleetFail(conn, `sample of ${agent} before its status event`)
  } else {
    agent = conn.agentId
    sample = parsed
  }
  if (typeof sample?.n !== 'number' || typeof sample.t !== 'number') return fleetFail(conn, `sample without n and t: ${data.slice(0, 80)}`)
  const last = conn.lastN.get(agent)
  if (last !== -1 && sample.n !== last + 1) {
    return fleetFail(conn, `${agent}: sample ${sample.n} after ${last} (${sample.n <= last ? 'duplicate or disorder' : `missing ${sample.n - last - 1}`})`)
  }
  conn.lastN.set(agent, sample.n)
  fleet.delivered++
  if (fleet.measuring) fleet.latencies.push(now + offsetMs - sample.t)
}

function openFleet (port, path, conn, onHead, onFail) {
  open(port, path, conn, onHead, onFail, fleetOnRead, fleetFail)
}

function fleetConnect ({ port, mode, agents, conns: fleetCount, perConn, intervalSeconds, parallel }) {
  const specs = []
  for (const watched of fleetLayout({ agents, conns: fleetCount, perConn })) {
    const ids = watched.map(agentId)
    if (mode === 'fleet') {
      specs.push({ ids, path: `/metrics/stream?agents=${ids.join(',')}&interval_seconds=${intervalSeconds}` })
    } else {
      for (const id of ids) specs.push({ ids: [id], path: `/agents/${id}/metrics/stream?interval_seconds=${intervalSeconds}` })
    }
  }
  return new Promise((resolve) => {
    const start = performance.now()
    let started = 0
    let headed = 0
    let done = false
    const finish = (result) => {
      if (done) return
      done = true
      resolve(result)
    }
    const launch = () => {
      if (done || started >= specs.length) return
      const spec = specs[started++]
      const conn = new FleetConn(fleetConns.length, mode, spec.ids)
      fleetConns.push(conn)
      openFleet(port, spec.path, conn, () => {
        headed++
        if (headed === specs.length) finish({ ok: true, connections: specs.length, ms: performance.now() - start })
        else launch()
      }, (why) => finish({ ok: false, error: `connect ${mode} ${conn.index}: ${why}` }))
    }
    for (let k = 0; k < Math.min(parallel, specs.length); k++) launch()
  })
}

async function getJson (port, path) {
  const res = await request(`http://127.0.0.1:${port}${path}`)
  const body = await res.body.json()
  if (res.statusCode !== 200) throw new Error(`GET ${path} answered ${res.statusCode}`)
  return body
}

async function clockOffset ({ port }) {
  let best = null
  for (let k = 0; k < 30; k++) {
    const before = epochNow()
    const { now } = await getJson(port, '/clock')
    const after = epochNow()
    if (best === null || after - before < best.rttMs) best = { rttMs: after - before, offsetMs: now - (before + after) / 2 }
  }
  offsetMs = best.offsetMs
  return { ok: true, ...best }
}

/** Busy and total jiffies of the whole machine (/proc/stat), or null off Linux. */
function machineTicks () {
  try {
    const fields = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number)
    const idle = fields[3] + (fields[4] ?? 0)
    const total = fields.reduce((sum, value) => sum + value, 0)
    return { busy: total - idle, total }
  } catch {
    return null
  }
}

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

async function fleetWindow ({ port, ms }) {
  if (fleet.failed > 0) return { ok: false, error: `${fleet.failed} connection(s) failed before the window; first: ${fleet.firstError}` }
  const before = await getJson(port, '/stats')
  const delivered0 = fleet.delivered
  const statuses0 = fleet.statuses
  const cpu0 = process.cpuUsage()
  const machine0 = machineTicks()
  const start = performance.now()
  fleet.latencies = []
  fleet.measuring = true
  await new Promise((resolve) => setTimeout(resolve, ms))
  fleet.measuring = false
  const elapsed = performance.now() - start
  const delivered = fleet.delivered - delivered0
  const statuses = fleet.statuses - statuses0
  const cpu1 = process.cpuUsage(cpu0)
  const machine1 = machineTicks()
  const after = await getJson(port, '/stats')
  if (fleet.failed > 0) return { ok: false, error: `${fleet.failed} connection(s) failed; first: ${fleet.firstError}` }
  const latencies = Float64Array.from(fleet.latencies).sort()
  fleet.latencies = []
  const serverCpuUs = (after.cpu.user - before.cpu.user) + (after.cpu.system - before.cpu.system)
  return {
    ok: true,
    ms: elapsed,
    delivered,
    statuses,
    pushes: after.pushes - before.pushes,
    serverCpuUs,
    serverCpuPct: serverCpuUs / 10 / elapsed,
    serverUserUs: after.cpu.user - before.cpu.user,
    serverSystemUs: after.cpu.system - before.cpu.system,
    serverElu: after.elu,
    serverLoopDelay: after.loopDelay,
    serverWriteSyscalls: after.syscw === null || before.syscw === null ? null : after.syscw - before.syscw,
    serverWriteBytes: after.wchar === null || before.wchar === null ? null : after.wchar - before.wchar,
    clientCpuPct: (cpu1.user + cpu1.system) / 10 / elapsed,
    machineBusyPct: machine0 && machine1 ? (100 * (machine1.busy - machine0.busy)) / (machine1.total - machine0.total) : null,
    latency: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies.length ? latencies[latencies.length - 1] : null, count: latencies.length }
  }
}

/** After the pushes stopped: each (connection, agent) must have ended at the agent's last sample. */
function fleetCheck ({ pushed }) {
  if (fleet.failed > 0) return { ok: false, error: `${fleet.failed} connection(s) failed; first: ${fleet.firstError}` }
  let behind = 0
  let first = null
  for (const conn of fleetConns) {
    for (const [id, last] of conn.lastN) {
      const expected = pushed[Number(id.slice('agent-'.length))]
      if (last !== expected) {
        behind++
        first ??= `${conn.mode} connection ${conn.index}, ${id}: last sample ${last}, the agent pushed ${expected}`
      }
    }
  }
  if (behind > 0) return { ok: false, error: `${behind} (connection, agent) pairs did not get every sample; first: ${first}` }
  return { ok: true, connections: fleetConns.length, delivered: fleet.delivered, statuses: fleet.statuses }
}

const commands = { connect: connectAll, broadcast, close: closeAll, churn, clock: clockOffset, fleetConnect, fleetClock: clockOffset, fleetWindow, fleetCheck, stormArm, storm: stormRun }

async function handle (line) {
  let message
  try {
    message = JSON.parse(line)
  } catch {
    return
  }
  let answer
  try {
    const command = commands[message.cmd]
    answer = command ? await command(message) : { ok: false, error: `unknown command ${message.cmd}` }
  } catch (err) {
    answer = { ok: false, error: String(err?.stack ?? err) }
  }
  process.stdout.write(JSON.stringify({ id: message.id, ...answer }) + '\n')
}

process.on('unhandledRejection', (err) => { process.stderr.write(`load-client: unhandled rejection ${err?.stack ?? err}\n`) })
readline.createInterface({ input: process.stdin }).on('line', (line) => { handle(line) }).on('close', () => process.exit(0))
