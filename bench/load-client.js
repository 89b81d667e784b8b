// Load client, run as its own process by bench/run.js. Commands arrive as JSON lines on stdin
// (`{ "id": n, "cmd": …, … }`), answers leave as JSON lines on stdout (`{ "id": n, "ok": true, … }`).
//
//   connect   { port, path, clients, parallel }  opens `clients` raw-socket SSE connections (at most `parallel`
//                                                waiting for their head at once); answers once every one has its
//                                                `200` head: { ms, connectsPerSec }
//   broadcast { port, events, size, timeoutMs }  POSTs /broadcast and waits until every client has seq 0..E-1,
//                                                each exactly once and in order: { ms, eventsPerSec } or ok:false
//   close     {}                                 destroys every connection
//   churn     { port, path, cycles, parallel }   connect, wait for the head, disconnect; `cycles` times, `parallel`
//                                                at once: { ms, cyclesPerSec }
//
// Frames are counted by scanning the bytes for `"seq":` and the decimal number after it, so the transfer
// encoding (chunk-size lines between frames) and the SSE field layout of each library do not matter. The scan
// copes with a pattern or number split across reads. All sockets share one read buffer (`onread`), so a read
// allocates nothing but a view; only a pattern straddling two reads copies a few bytes.
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import readline from 'node:readline'
import { request } from 'undici'

const SEQ = Buffer.from('"seq":')
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
  onSettled: null
}

class Conn {
  constructor (index) {
    this.index = index
    this.socket = null
    this.head = null // bytes of an incomplete response head
    this.status = 0 // HTTP status once the head is complete
    this.next = 0 // next expected seq
    this.partial = null // bytes of a `"seq":<digits>` split across reads
    this.error = null
    this.onHead = null
    this.onFail = null
    this.closing = false
  }
}

function fail (conn, message) {
  if (conn.error !== null) return
  conn.error = message
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

function record (conn, seq) {
  if (conn.error !== null) return
  if (!run.armed) return fail(conn, `seq ${seq} received outside a broadcast`)
  if (seq !== conn.next) {
    return fail(conn, conn.next >= run.events
      ? `extra seq ${seq} after all ${run.events} events`
      : `expected seq ${conn.next}, got ${seq} (${seq < conn.next ? 'duplicate or disorder' : 'missing ' + (seq - conn.next)})`)
  }
  conn.next++
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

function scanBody (conn, buf) {
  let pos = 0
  if (conn.partial !== null) {
    // Finish a pattern or number that began in an earlier read (at most a few dozen bytes are copied).
    const carried = conn.partial
    conn.partial = null
    const joined = Buffer.concat([carried, buf.subarray(0, 48)])
    const i = joined.indexOf(SEQ)
    if (i !== -1 && i < carried.length) {
      const parsed = number(joined, i + SEQ.length)
      if (parsed === null) {
        if (joined.length === carried.length + buf.length) {
          conn.partial = Buffer.from(joined.subarray(i))
          return
        }
        return fail(conn, 'unparseable seq (too many digits)')
      }
      if (parsed[0] < 0) return fail(conn, 'malformed "seq": without a number')
      record(conn, parsed[0])
      pos = parsed[1] - carried.length
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
    const parsed = number(buf, i + SEQ.length)
    if (parsed === null) {
      conn.partial = Buffer.from(buf.subarray(i))
      return
    }
    if (parsed[0] < 0) return fail(conn, 'malformed "seq": without a number')
    record(conn, parsed[0])
    if (conn.error !== null) return
    pos = parsed[1]
  }
}

function onRead (conn, nread, buffer) {
  let buf = buffer.subarray(0, nread)
  if (conn.status === 0) {
    const head = conn.head === null ? buf : Buffer.concat([conn.head, buf])
    const end = head.indexOf(HEAD_END)
    if (end === -1) {
      conn.head = Buffer.from(head)
      if (conn.head.length > 16384) conn.onFail?.('response head too large')
      return
    }
    conn.head = null
    const statusLine = head.toString('latin1', 0, Math.min(end, 64))
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)
    conn.status = match ? Number(match[1]) : -1
    if (conn.status !== 200) {
      conn.onFail?.(`HTTP status ${match ? conn.status : '?'}: ${statusLine.split('\r\n')[0]}`)
      return
    }
    conn.onHead?.()
    buf = head.subarray(end + HEAD_END.length)
    if (buf.length === 0) return
  }
  scanBody(conn, buf)
}

function open (port, path, conn, onHead, onFail) {
  conn.onHead = onHead
  conn.onFail = onFail
  const socket = net.connect({
    port,
    host: '127.0.0.1',
    noDelay: true,
    onread: { buffer: READ_BUFFER, callback: (nread, buffer) => { onRead(conn, nread, buffer) } }
  })
  conn.socket = socket
  socket.on('connect', () => {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`)
  })
  socket.on('error', (err) => {
    if (conn.status === 0) conn.onFail?.(err.code ?? err.message)
    else fail(conn, `socket error ${err.code ?? err.message}`)
  })
  socket.on('close', () => {
    if (conn.closing) return
    if (conn.status === 0) conn.onFail?.('closed before the response head')
    else fail(conn, 'connection closed by the server')
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

async function broadcast ({ port, events, size, timeoutMs }) {
  const broken = conns.find((conn) => conn.error !== null)
  if (broken) return { ok: false, error: `client ${broken.index} already failed: ${broken.error}` }
  for (const conn of conns) conn.next = 0
  Object.assign(run, { armed: true, events, remaining: conns.length, failed: 0, firstError: null })
  const settled = new Promise((resolve) => { run.onSettled = resolve })
  let timer
  const timedOut = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs) })
  const startCpu = process.cpuUsage()
  const start = performance.now()
  let response
  try {
    const res = await request(`http://127.0.0.1:${port}/broadcast?events=${events}&size=${size}`, { method: 'POST' })
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
  return { ok: true, ms, delivered: conns.length * events, eventsPerSec: (conns.length * events) / (ms / 1000), clientCpuPct: (100 * clientCpuMs) / ms, responseMs: response.ms, server: response.body }
}

function closeAll () {
  for (const conn of conns) {
    conn.closing = true
    conn.socket?.destroy()
  }
  conns = []
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

const commands = { connect: connectAll, broadcast, close: closeAll, churn }

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
