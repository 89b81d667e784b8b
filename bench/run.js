// Benchmark orchestrator: `npm run bench` (full), `node bench/run.js --quick` (a smoke run, under two minutes).
// Options: --quick, --only=name1,name2, --rounds=N, --agent-max-buffered=BYTES, --agent-flush-ms=MS, --json=FILE,
//          --scenarios=throughput,idle,latency,churn,storm,fleet, --clients=N --events=E --size=S --idle=N --churn=N
//          (overrides), latency: --latency-clients=N --latency-seconds=S, storm: --storm-clients=N --storm-spread-ms=MS,
//          fleet: --fleet-agents=N --fleet-conns=N --fleet-per-conn=N --fleet-window-ms=MS --fleet-warmup-ms=MS,
//          --fleet-arms=fleet,single,floor (all three by default; `floor` is the agents pushing with no connection,
//          reported as an informational line beside the fleet table), --fleet-phases=grouped|scattered (when each
//          agent pushes: grouped by default, see bench/servers/agent-sse-fleet.js)
// Env: BENCH_NODE_ARGS adds node flags to the server processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
//
// Every implementation in bench/servers/ runs in its own process (fresh per scenario, so no scenario sees
// another's heap, sockets or replay state) and the load client (bench/load-client.js) runs in another.
// Rounds alternate over the implementations (the starting one rotates per round); medians are reported.
//
// How samples reach the servers: POST /broadcast pushes them one per macrotask (a setImmediate chain), the way an
// agent transport delivers them (one message per socket read); every sample carries its push time, and the load
// client computes the latency push -> receipt for every event of every client. The old synchronous loop (every
// sample in one tick, which lets socket corking carry the whole burst in one write) runs as an extra, labelled
// measurement: "synchronous burst (not how transports deliver)". Scenarios:
//   throughput  N clients x E events (one per macrotask), then the same as a synchronous burst; setup rate
//   idle        RSS per idle connection, then a few events to every idle client
//   latency     200 clients x 50 samples/s (one every 20 ms, by timer): latency p50/p99 at an agent's pace
//   churn       ours only: connect/disconnect cycles against one agent, exactly one start and one stop
//   storm       every client drops at once and reconnects within 3 s while samples flow: time until every client
//               has its stream back, the server's event-loop delay, a probe GET /stats's latency, errors
//   fleet       ours only: fleet connections against single-agent connections (see fleetScenario)
import { execFileSync, spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'
import { request } from 'undici'
import { watchersPerAgent } from './fleet-layout.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')

const IMPLEMENTATIONS = [
  { name: 'node-http-write', label: 'node:http res.write' },
  { name: 'node-http-socket', label: 'node:http socket.write (pre-chunked)' },
  { name: 'fastify-hijack', label: 'Fastify + reply.hijack() + res.write' },
  { name: 'fastify-sse', label: `@fastify/sse ${version('@fastify/sse')}` },
  { name: 'better-sse', label: `better-sse ${version('better-sse')}` },
  { name: 'fastify-sse-v2', label: `fastify-sse-v2 ${version('fastify-sse-v2')}` },
  { name: 'agent-sse', label: 'fastify-agent-sse (this)' }
]
/** The fleet scenario's server (ours only): bench/servers/agent-sse-fleet.js. */
const FLEET_SERVER = { name: 'agent-sse-fleet', label: 'fastify-agent-sse fleet scenario' }
const BASELINE = 'node-http-write'
const FASTIFY_SSE = 'fastify-sse'
const HIJACK = 'fastify-hijack'
const OURS = 'agent-sse'

const args = parseArgs(process.argv.slice(2))
const quick = args.quick === true
const config = quick
  ? { clients: 200, events: 50, size: 256, idle: 1000, idleEvents: 20, churn: 200, churnParallel: 8, rounds: 1 }
  : { clients: 1000, events: 200, size: 256, idle: 5000, idleEvents: 20, churn: 2000, churnParallel: 16, rounds: 3 }
// The latency scenario: `latencyClients` clients, one sample every `latencyIntervalMs` (by timer) for `latencySeconds`.
// The reconnect storm: `stormClients` clients drop at once and reconnect spread over `stormSpreadMs`, while the
// server pushes one sample every `stormIntervalMs`; a failed attempt retries after `stormRetryMs`; GET /stats is
// probed every `stormProbeMs` throughout.
Object.assign(config, quick
  ? { latencyClients: 200, latencyIntervalMs: 20, latencySeconds: 1, stormClients: 1000 }
  : { latencyClients: 200, latencyIntervalMs: 20, latencySeconds: 5, stormClients: 10000 })
Object.assign(config, { stormSpreadMs: 3000, stormIntervalMs: 1000, stormRetryMs: 1000, stormProbeMs: 50, stormTimeoutMs: quick ? 15000 : 60000 })
// The fleet scenario (issue "Fleet streams"): `fleetAgents` agents at 1 sample/s each, phases spread over the second;
// `fleetConns` fleet connections of `fleetPerConn` agents each, against the same deliveries over single-agent
// connections (fleetConns × fleetPerConn of them). The issue's load is 500 agents, 200 × 100; when the single-agent
// arm does not fit the file descriptor limit (`ulimit -n`, for the server and the load client alike), both arms are
// scaled down by the same power of two (see fleetScale below).
const FLEET_TARGET = { agents: 500, conns: 200, perConn: 100 }
Object.assign(config, quick
  ? { fleetAgents: 50, fleetConns: 10, fleetPerConn: 20, fleetWarmupMs: 700, fleetWindowMs: 2000 }
  : { fleetAgents: FLEET_TARGET.agents, fleetConns: FLEET_TARGET.conns, fleetPerConn: FLEET_TARGET.perConn, fleetWarmupMs: 5000, fleetWindowMs: 15000 })
Object.assign(config, {
  fleetIntervalSeconds: 1,
  fleetSampleSize: 256,
  warmEvents: 10,
  warmConnections: quick ? 100 : 3000,
  setupBatches: quick ? 1 : 4,
  connectParallel: 128, // connections waiting for their head at once (the servers' listen backlog is 511)
  stopDelayMs: 2000,
  scenarioTimeoutMs: quick ? 20000 : 120000,
  deliveryTimeoutMs: quick ? 10000 : 60000
})
// Overrides for development: --rounds, --clients, --events, --size, --idle, --churn, --fleet-*.
const OVERRIDES = {
  rounds: 'rounds',
  clients: 'clients',
  events: 'events',
  size: 'size',
  idle: 'idle',
  churn: 'churn',
  'latency-clients': 'latencyClients',
  'latency-seconds': 'latencySeconds',
  'storm-clients': 'stormClients',
  'storm-spread-ms': 'stormSpreadMs',
  'fleet-agents': 'fleetAgents',
  'fleet-conns': 'fleetConns',
  'fleet-per-conn': 'fleetPerConn',
  'fleet-window-ms': 'fleetWindowMs',
  'fleet-warmup-ms': 'fleetWarmupMs'
}
for (const [flag, key] of Object.entries(OVERRIDES)) {
  if (args[flag] === undefined) continue
  const value = Number(args[flag])
  const minimum = flag === 'size' || flag === 'fleet-warmup-ms' ? 0 : 1
  if (!Number.isInteger(value) || value < minimum) {
    console.error(`--${flag} must be an integer >= ${minimum}`)
    process.exit(2)
  }
  config[key] = value
}
const ALL_SCENARIOS = ['throughput', 'idle', 'latency', 'churn', 'storm', 'fleet']
const scenarios = typeof args.scenarios === 'string' ? args.scenarios.split(',') : ALL_SCENARIOS
const unknownScenarios = scenarios.filter((name) => !ALL_SCENARIOS.includes(name))
if (unknownScenarios.length > 0) {
  console.error(`unknown scenario(s): ${unknownScenarios.join(', ')}; known: ${ALL_SCENARIOS.join(', ')}`)
  process.exit(2)
}
const FLEET_ARMS = ['fleet', 'single', 'floor']
const fleetArms = typeof args['fleet-arms'] === 'string' ? args['fleet-arms'].split(',') : FLEET_ARMS
if (fleetArms.length === 0 || fleetArms.some((arm) => !FLEET_ARMS.includes(arm))) {
  console.error(`--fleet-arms takes one or more of ${FLEET_ARMS.join(', ')}`)
  process.exit(2)
}
if (config.fleetPerConn > config.fleetAgents) {
  console.error('--fleet-per-conn must not exceed --fleet-agents')
  process.exit(2)
}
// The single-agent arm holds fleetConns × fleetPerConn sockets in the server and in the load client (plus their
// own handful, and the warm-up connections that are closed before it): scale both arms by the same power of two
// until that fits the soft file descriptor limit, unless --fleet-conns was given.
const fdLimit = openFileLimit()
const FD_MARGIN = 200
let fleetScale = 1
if (args['fleet-conns'] === undefined && fdLimit !== null) {
  while (config.fleetConns > 1 && config.fleetConns * config.fleetPerConn > fdLimit - FD_MARGIN) {
    config.fleetConns = Math.ceil(config.fleetConns / 2)
    fleetScale /= 2
  }
}
// The storm holds stormClients sockets in the server and in the load client: scale down to fit `ulimit -n`.
let stormScaledFrom = null
if (fdLimit !== null && config.stormClients > fdLimit - FD_MARGIN) {
  stormScaledFrom = config.stormClients
  config.stormClients = Math.max(100, Math.floor((fdLimit - FD_MARGIN) / 1000) * 1000 || fdLimit - FD_MARGIN)
}
const agentMaxBuffered = args['agent-max-buffered'] === undefined ? null : Number(args['agent-max-buffered'])
const agentFlushMs = args['agent-flush-ms'] === undefined ? null : Number(args['agent-flush-ms'])
const fleetPhases = args['fleet-phases'] ?? 'grouped'
if (fleetPhases !== 'grouped' && fleetPhases !== 'scattered') {
  console.error('--fleet-phases takes grouped or scattered')
  process.exit(2)
}
/** How the fleet scenario's agents' pushes fall in each second, in words (for the headers). */
const PHASES_TEXT = fleetPhases === 'grouped'
  ? 'phases spread over the period in agent order, so a connection\'s agents push within one stretch of it'
  : 'phases scattered over the period, so a connection\'s agents push all over it'

let selected = IMPLEMENTATIONS
if (typeof args.only === 'string') {
  const wanted = args.only.split(',').map((name) => name.trim()).filter(Boolean)
  const unknown = wanted.filter((name) => !IMPLEMENTATIONS.some((impl) => impl.name === name))
  if (unknown.length > 0) {
    console.error(`unknown implementation(s): ${unknown.join(', ')}; known: ${IMPLEMENTATIONS.map((impl) => impl.name).join(', ')}`)
    process.exit(2)
  }
  selected = IMPLEMENTATIONS.filter((impl) => wanted.includes(impl.name))
}

// ---------------------------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed when we leave, however we leave.

const children = new Set()

function killChild (child) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

function killAll () {
  for (const child of children) killChild(child)
}

process.on('exit', () => {
  killAll()
  removeSnapshot()
})
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}
process.on('uncaughtException', (err) => {
  console.error('bench: uncaught exception', err)
  killAll()
  process.exit(1)
})
process.on('unhandledRejection', (err) => {
  console.error('bench: unhandled rejection', err)
})

/** Spawns `node <file>`; resolves with the child once it printed its first stdout line (parsed as JSON). */
function spawnNode (file, { env = {}, nodeArgs = [], readyTimeoutMs = 20000 } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, file], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  children.add(child)
  child.stderrTail = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (text) => { child.stderrTail = (child.stderrTail + text).slice(-4000) })
  child.stdin.on('error', () => {})
  child.stdout.setEncoding('utf8')
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  child.on('error', () => {})
  return child
}

function waitReady (child, what, timeoutMs) {
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => done(new Error(`${what} did not report ready within ${timeoutMs} ms${tail(child)}`)), timeoutMs)
    const onData = (text) => {
      buffered += text
      const newline = buffered.indexOf('\n')
      if (newline === -1) return
      try {
        done(null, JSON.parse(buffered.slice(0, newline)))
      } catch {
        done(new Error(`${what} printed something that is not JSON: ${buffered.slice(0, 200)}`))
      }
    }
    const onExit = () => done(new Error(`${what} exited before it was ready${tail(child)}`))
    function done (err, value) {
      clearTimeout(timer)
      child.stdout.off('data', onData)
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve(value)
    }
    child.stdout.on('data', onData)
    child.on('exit', onExit)
  })
}

function tail (child) {
  const text = child.stderrTail.trim()
  return text ? `; stderr: ${text.slice(-800)}` : ''
}

// BENCH_NODE_ARGS adds node flags to every server process (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
const serverNodeArgs = ['--expose-gc', ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)]

async function startServer (impl, env = {}) {
  const child = spawnNode(path.join(here, 'servers', `${impl.name}.js`), { env, nodeArgs: serverNodeArgs })
  const info = await waitReady(child, `server ${impl.name}`, 20000)
  if (!Number.isInteger(info.port) || typeof info.path !== 'string') throw new Error(`server ${impl.name} announced ${JSON.stringify(info)}`)
  return { child, ...info }
}

/** The load client process and a request/answer channel to it. */
function startLoadClient () {
  const child = spawnNode(path.join(here, 'load-client.js'))
  const pending = new Map()
  let nextId = 1
  let buffered = ''
  child.stdout.on('data', (text) => {
    buffered += text
    let newline
    while ((newline = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      let message
      try {
        message = JSON.parse(line)
      } catch {
        continue
      }
      const waiter = pending.get(message.id)
      if (waiter) {
        pending.delete(message.id)
        waiter.resolve(message)
      }
    }
  })
  child.exited.then(() => {
    for (const waiter of pending.values()) waiter.reject(new Error(`load client exited${tail(child)}`))
    pending.clear()
  })
  return {
    child,
    call (cmd, params = {}) {
      const id = nextId++
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject })
        child.stdin.write(JSON.stringify({ id, cmd, ...params }) + '\n')
      })
    }
  }
}

async function getStats (port, gc = false) {
  const query = gc === true ? '?gc=1' : typeof gc === 'string' ? `?${gc}` : ''
  const res = await request(`http://127.0.0.1:${port}/stats${query}`)
  const body = await res.body.json()
  if (res.statusCode !== 200) throw new Error(`GET /stats answered ${res.statusCode}`)
  return body
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class ScenarioFailure extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

function expectOk (answer, what) {
  if (answer.ok) return answer
  throw new ScenarioFailure(answer.timeout ? 'TIMEOUT' : 'FAILED', `${what}: ${answer.error}`)
}

/**
 * Runs one scenario against a fresh server and a fresh load client, bounded by the scenario timeout.
 * Never throws: the result is { status: 'ok', ... } or { status: 'FAILED' | 'TIMEOUT' | 'ERROR', error }.
 */
async function runScenario (name, impl, body, env = {}) {
  const spawned = []
  const progress = { step: 'starting the server' }
  let timer
  const work = (async () => {
    const server = await startServer(impl, env)
    spawned.push(server.child)
    const client = startLoadClient()
    spawned.push(client.child)
    return { status: 'ok', ...(await body(server, client, progress)) }
  })()
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ status: 'TIMEOUT', error: `${name} did not finish within ${config.scenarioTimeoutMs} ms (stuck at: ${progress.step})` }), config.scenarioTimeoutMs)
  })
  let result
  try {
    result = await Promise.race([work, timeout])
  } catch (err) {
    result = { status: err instanceof ScenarioFailure ? err.status : 'ERROR', error: err.message }
  } finally {
    clearTimeout(timer)
    // Closing stdin asks a child to exit (servers exit when it ends; a profiler then writes its file);
    // whatever is still alive a second later is killed.
    for (const child of spawned) child.stdin.end()
    const grace = setTimeout(() => { for (const child of spawned) killChild(child) }, 1000)
    await Promise.all(spawned.map((child) => child.exited))
    clearTimeout(grace)
  }
  work.catch(() => {}) // after a timeout the abandoned work fails once its processes are gone
  return result
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

function serverEnv (impl, extra = {}) {
  if (impl.name !== OURS) return {}
  const env = { BENCH_STOP_DELAY_MS: String(config.stopDelayMs), ...extra }
  if (agentMaxBuffered !== null) env.BENCH_MAX_BUFFERED_BYTES = String(agentMaxBuffered)
  if (agentFlushMs !== null) env.BENCH_FLUSH_INTERVAL_MS = String(agentFlushMs)
  return env
}

/**
 * Broadcasts `events` (after a `warmEvents` warm-up in the same mode) and measures the server's CPU over it: the load
 * client's answer plus cpuUsPerEvent (server user+system time / delivered events).
 */
async function measuredBroadcast (server, client, { clients, events, mode, intervalMs, timeoutMs = config.deliveryTimeoutMs }, what) {
  const { port } = server
  expectOk(await client.call('broadcast', { port, events: config.warmEvents, size: config.size, mode, intervalMs, timeoutMs }), `warm-up ${what}`)
  const before = await getStats(port)
  const run = expectOk(await client.call('broadcast', { port, events, size: config.size, mode, intervalMs, timeoutMs }), what)
  const after = await getStats(port)
  const cpuUs = (after.cpu.user - before.cpu.user) + (after.cpu.system - before.cpu.system)
  return { ...run, cpuUsPerEvent: cpuUs / run.delivered, unhandledRejections: after.unhandledRejections }
}

/** Latency fields (ms) of a result from a load client's `latency` summary. */
function latencyFields (prefix, latency) {
  return { [`${prefix}P50`]: latency.p50, [`${prefix}P99`]: latency.p99, [`${prefix}Max`]: latency.max }
}

/**
 * (a) + (c): N clients, E events of S bytes, one per macrotask; delivered events/s, server CPU per delivered event,
 * latency push -> receipt, setup rate. Then the same E events as one synchronous burst (the extra, labelled row).
 */
function throughput (impl) {
  return runScenario('throughput', impl, async (server, client, progress) => {
    const { port } = server
    // Setup is measured in steady state: a server lives for months, so the JIT warm-up of each
    // implementation's connection path (the same number of connections for all) is not part of it.
    progress.step = `warm-up: ${config.warmConnections} connections`
    expectOk(await client.call('connect', { port, path: server.path, clients: config.warmConnections, parallel: config.connectParallel }), 'warm-up connect')
    await client.call('close')
    for (let i = 0; i < 100 && (await getStats(port)).clients !== 0; i++) await sleep(20)
    // A batch of 1,000 connections takes ~150 ms: one batch is noise, so setup is the median of several.
    const setupRates = []
    for (let batch = 0; batch < config.setupBatches; batch++) {
      progress.step = `setup batch ${batch + 1}/${config.setupBatches}`
      setupRates.push(expectOk(await client.call('connect', { port, path: server.path, clients: config.clients, parallel: config.connectParallel }), 'setup batch').connectsPerSec)
      await client.call('close')
      for (let i = 0; i < 100 && (await getStats(port)).clients !== 0; i++) await sleep(20)
    }
    progress.step = `connecting ${config.clients} clients`
    const connect = expectOk(await client.call('connect', { port, path: server.path, clients: config.clients, parallel: config.connectParallel }), 'connect')
    const ready = await getStats(port)
    if (ready.clients !== config.clients) throw new ScenarioFailure('FAILED', `server counts ${ready.clients} clients, expected ${config.clients}`)
    expectOk(await client.call('clock', { port }), 'clock offset')
    progress.step = 'broadcast (one sample per macrotask)'
    const run = await measuredBroadcast(server, client, { events: config.events, mode: 'macrotask' }, 'broadcast')
    progress.step = 'broadcast (synchronous burst)'
    const burst = await measuredBroadcast(server, client, { events: config.events, mode: 'burst' }, 'burst broadcast')
    return {
      eventsPerSec: run.eventsPerSec,
      wallMs: run.ms,
      clientCpuPct: run.clientCpuPct,
      responseMs: run.responseMs,
      cpuUsPerEvent: run.cpuUsPerEvent,
      ...latencyFields('latency', run.latency),
      burstEventsPerSec: burst.eventsPerSec,
      burstClientCpuPct: burst.clientCpuPct,
      burstCpuUsPerEvent: burst.cpuUsPerEvent,
      ...latencyFields('burstLatency', burst.latency),
      setupPerSec: median([...setupRates, connect.connectsPerSec]),
      setupMs: connect.ms,
      unhandledRejections: burst.unhandledRejections
    }
  }, serverEnv(impl))
}

/** (b): RSS per idle connection, then a short broadcast that every idle client must receive completely. */
function idle (impl) {
  return runScenario('idle', impl, async (server, client, progress) => {
    const { port } = server
    progress.step = 'warm-up connections'
    // Warm the connection path (route, parser, lazy allocations) so the delta is per connection.
    expectOk(await client.call('connect', { port, path: server.path, clients: 50, parallel: config.connectParallel }), 'warm-up connect')
    await client.call('close')
    await sleep(300)
    const before = await getStats(port, true)
    progress.step = `connecting ${config.idle} idle clients`
    const connect = expectOk(await client.call('connect', { port, path: server.path, clients: config.idle, parallel: config.connectParallel }), 'connect')
    await sleep(500)
    const after = await getStats(port, true)
    if (after.clients !== config.idle) throw new ScenarioFailure('FAILED', `server counts ${after.clients} clients, expected ${config.idle}`)
    expectOk(await client.call('clock', { port }), 'clock offset')
    progress.step = 'broadcast to idle clients'
    const run = await measuredBroadcast(server, client, { events: config.idleEvents, mode: 'macrotask' }, 'broadcast to idle clients')
    return {
      rssPerConnKB: (after.rss - before.rss) / config.idle / 1024,
      rssBeforeMB: before.rss / 1048576,
      rssAfterMB: after.rss / 1048576,
      idleSetupPerSec: connect.connectsPerSec,
      idleBroadcastMs: run.ms,
      idleCpuUsPerEvent: run.cpuUsPerEvent,
      ...latencyFields('idleLatency', run.latency)
    }
  }, serverEnv(impl))
}

/** Latency at an agent's pace: latencyClients clients, one sample every latencyIntervalMs (by timer). */
function latencyScenario (impl) {
  return runScenario('latency', impl, async (server, client, progress) => {
    const { port } = server
    progress.step = `connecting ${config.latencyClients} clients`
    expectOk(await client.call('connect', { port, path: server.path, clients: config.latencyClients, parallel: config.connectParallel }), 'connect')
    expectOk(await client.call('clock', { port }), 'clock offset')
    const events = Math.max(1, Math.round((config.latencySeconds * 1000) / config.latencyIntervalMs))
    progress.step = `${events} samples, one every ${config.latencyIntervalMs} ms`
    const run = await measuredBroadcast(server, client, {
      events,
      mode: 'rate',
      intervalMs: config.latencyIntervalMs,
      timeoutMs: config.latencySeconds * 1000 + config.deliveryTimeoutMs
    }, 'rate-limited broadcast')
    return { cpuUsPerEvent: run.cpuUsPerEvent, eventsPerSec: run.eventsPerSec, clientCpuPct: run.clientCpuPct, ...latencyFields('latency', run.latency), latencyCount: run.latency.count }
  }, serverEnv(impl))
}

/**
 * Reconnect storm: stormClients clients connect and receive samples (one every stormIntervalMs, by timer); then they
 * all drop at once and reconnect, spread evenly over stormSpreadMs. Every one must get its 200 head and then a
 * sample (each later sample the previous + 1). Meanwhile GET /stats is probed every stormProbeMs from this process;
 * the server measures its event-loop delay over the storm.
 */
function stormScenario (impl) {
  return runScenario('storm', impl, async (server, client, progress) => {
    const { port } = server
    const n = config.stormClients
    progress.step = `connecting ${n} clients`
    expectOk(await client.call('connect', { port, path: server.path, clients: n, parallel: config.connectParallel }), 'connect')
    expectOk(await client.call('clock', { port }), 'clock offset')
    expectOk(await client.call('stormArm'), 'storm arm')
    // Samples flow for longer than the scenario can last; the server goes away with them still scheduled.
    const events = Math.ceil(config.scenarioTimeoutMs / config.stormIntervalMs) + 100
    request(`http://127.0.0.1:${port}/broadcast?events=${events}&size=${config.size}&mode=rate&interval=${config.stormIntervalMs}`, { method: 'POST' })
      .then((res) => res.body.dump(), () => {})
      .catch(() => {})
    progress.step = `storm: ${n} clients reconnecting within ${config.stormSpreadMs} ms`
    const before = await getStats(port, 'loop=start')
    const wall0 = performance.now()
    const probes = []
    const storming = { on: true }
    const probing = (async () => {
      while (storming.on) {
        const start = performance.now()
        try {
          await getStats(port)
          probes.push(performance.now() - start)
        } catch {
          probes.push(Infinity)
        }
        await sleep(config.stormProbeMs)
      }
    })()
    let run
    try {
      run = expectOk(await client.call('storm', { port, path: server.path, spreadMs: config.stormSpreadMs, retryMs: config.stormRetryMs, timeoutMs: config.stormTimeoutMs }), 'storm')
    } finally {
      storming.on = false
      await probing
    }
    const after = await getStats(port, 'loop=stop')
    const wallMs = performance.now() - wall0
    let clients = after.clients
    for (let i = 0; i < 100 && clients !== n; i++) {
      await sleep(20)
      clients = (await getStats(port)).clients
    }
    if (clients !== n) throw new ScenarioFailure('FAILED', `after the storm the server counts ${clients} clients, expected ${n}`)
    const sorted = probes.sort((x, y) => x - y)
    const errors = Object.values(run.errors).reduce((sum, count) => sum + count, 0)
    return {
      clients: n,
      allConnectedMs: run.allConnectedMs,
      allStreamingMs: run.allStreamingMs,
      perClientP50: run.perClient.p50,
      perClientP99: run.perClient.p99,
      perClientMax: run.perClient.max,
      loopDelayP99Ms: after.loopDelay?.p99Ms ?? null,
      loopDelayMaxMs: after.loopDelay?.maxMs ?? null,
      probeP50Ms: sorted[Math.floor(sorted.length / 2)] ?? null,
      probeP99Ms: sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)] ?? null,
      probeMaxMs: sorted[sorted.length - 1] ?? null,
      probes: sorted.length,
      errors,
      errorKinds: run.errors,
      attempts: run.attempts,
      serverCpuPct: ((after.cpu.user - before.cpu.user) + (after.cpu.system - before.cpu.system)) / 10 / wallMs,
      ...latencyFields('latency', run.latency)
    }
  }, serverEnv(impl))
}

/** (d), ours only: connect/disconnect cycles against one agent; the adapter must see exactly 1 start and 1 stop. */
function churn (impl) {
  return runScenario('churn', impl, async (server, client, progress) => {
    const { port } = server
    progress.step = 'connect/disconnect cycles'
    const run = expectOk(await client.call('churn', { port, path: server.path, cycles: config.churn, parallel: config.churnParallel }), 'churn')
    progress.step = 'waiting for the stop after the grace window'
    const deadline = Date.now() + config.stopDelayMs + 5000
    let stats = await getStats(port)
    while (Date.now() < deadline && !(stats.stops >= 1 && stats.state === 'idle')) {
      await sleep(100)
      stats = await getStats(port)
    }
    await sleep(300) // anything that would start or stop again shows up here
    stats = await getStats(port)
    const result = { cyclesPerSec: run.cyclesPerSec, ms: run.ms, starts: stats.starts, stops: stats.stops, clients: stats.clients, state: stats.state }
    if (stats.starts !== 1 || stats.stops !== 1 || stats.clients !== 0 || stats.state !== 'idle') {
      throw new ScenarioFailure('FAILED', `lifecycle after churn: ${stats.starts} start(s), ${stats.stops} stop(s), ${stats.clients} clients, state ${stats.state} (expected 1, 1, 0, idle)`)
    }
    return result
  }, serverEnv(impl, { BENCH_STOP_DELAY_MS: String(config.stopDelayMs) }))
}

/**
 * Fleet vs single-agent connections (ours only), one arm per call, each against a fresh server:
 * - `fleet`: config.fleetConns connections to GET /metrics/stream?agents=… (fleetPerConn agents each);
 * - `single`: the same (connection, agent) pairs as single-agent connections, fleetConns × fleetPerConn of them.
 * RSS per connection after connecting (before any sample flows: the agents are held and silent until the load
 * starts), then after a warm-up a measured window: server CPU per delivered sample, delivered samples/s,
 * latency push -> receipt. The run FAILS if any connection sees an id that does not increase, a sample lost,
 * repeated or out of order, or misses the agents' last samples.
 */
function fleetScenario (mode) {
  if (mode === 'floor') return fleetFloorScenario()
  const subscriptions = config.fleetConns * config.fleetPerConn
  const connections = mode === 'fleet' ? config.fleetConns : subscriptions
  const layout = { agents: config.fleetAgents, conns: config.fleetConns, perConn: config.fleetPerConn, intervalSeconds: config.fleetIntervalSeconds }
  const env = fleetServerEnv()
  return runScenario(`fleet (${mode})`, FLEET_SERVER, async (server, client, progress) => {
    const { port } = server
    const subscriptionsNow = async () => (await getStats(port)).subscriptions
    // Warm the connection path (route, validation, parser, lazy allocations) so the RSS delta is per connection.
    progress.step = `${mode}: warm-up connections`
    const warmConns = Math.max(1, Math.min(config.fleetConns, quick ? 2 : 5))
    expectOk(await client.call('fleetConnect', { port, mode, ...layout, conns: warmConns, parallel: config.connectParallel }), 'warm-up connect')
    await client.call('close')
    for (let i = 0; i < 100 && (await subscriptionsNow()) !== 0; i++) await sleep(20)
    await sleep(quick ? 100 : 300)
    const before = await getStats(port, 'gc=1&conns=1')
    progress.step = `${mode}: connecting ${connections} connections`
    const connect = expectOk(await client.call('fleetConnect', { port, mode, ...layout, parallel: config.connectParallel }), 'connect')
    await sleep(quick ? 200 : 500)
    const after = await getStats(port, 'gc=1&conns=1')
    if (after.clients !== connections || after.subscriptions !== subscriptions) {
      throw new ScenarioFailure('FAILED', `server counts ${after.clients} connections and ${after.subscriptions} subscriptions, expected ${connections} and ${subscriptions}`)
    }
    if (after.notActive !== 0) throw new ScenarioFailure('FAILED', `${after.notActive} agents are not active`)
    const clock = expectOk(await client.call('fleetClock', { port }), 'clock offset')
    progress.step = `${mode}: warm-up load (${config.fleetWarmupMs} ms)`
    await postLoad(port, true)
    await sleep(config.fleetWarmupMs)
    progress.step = `${mode}: measured window (${config.fleetWindowMs} ms)`
    const window = expectOk(await client.call('fleetWindow', { port, ms: config.fleetWindowMs }), 'measured window')
    progress.step = `${mode}: checking that every sample arrived`
    const { pushed } = await postLoad(port, false)
    await sleep(quick ? 300 : 500) // the last samples are on their way
    // On a loaded machine a backlog can take longer than that to drain: a connection still behind is checked
    // again for a while (the check fails at once on anything lost, repeated or out of order).
    let check = await client.call('fleetCheck', { pushed })
    for (let waited = 0; !check.ok && /did not get every sample/.test(check.error) && waited < FLEET_DRAIN_MS; waited += 250) {
      await sleep(250)
      check = await client.call('fleetCheck', { pushed })
    }
    check = expectOk(check, 'delivery check')
    const seconds = window.ms / 1000
    return {
      connections,
      subscriptions,
      connectMs: connect.ms,
      deliveredPerSec: window.delivered / seconds,
      expectedPerSec: subscriptions / config.fleetIntervalSeconds,
      pushesPerSec: window.pushes / seconds,
      cpuUsPerSample: window.serverCpuUs / window.delivered,
      serverCpuPct: window.serverCpuPct,
      serverSystemShare: window.serverSystemUs / window.serverCpuUs,
      serverElu: window.serverElu,
      loopDelayP99Ms: window.serverLoopDelay?.p99Ms ?? null,
      loopDelayMaxMs: window.serverLoopDelay?.maxMs ?? null,
      writeSyscallsPerSample: window.serverWriteSyscalls === null ? null : window.serverWriteSyscalls / window.delivered,
      statusesPerSec: window.statuses / seconds,
      rssPerConnKB: (after.rss - before.rss) / connections / 1024,
      rssPerSubscriptionKB: (after.rss - before.rss) / subscriptions / 1024,
      heapPerConnKB: (after.heapUsed - before.heapUsed) / connections / 1024,
      externalPerConnKB: (after.external - before.external) / connections / 1024,
      rssBeforeMB: before.rss / 1048576,
      rssAfterMB: after.rss / 1048576,
      latencyP50: window.latency.p50,
      latencyP99: window.latency.p99,
      latencyMax: window.latency.max,
      latencyCount: window.latency.count,
      clockOffsetMs: clock.offsetMs,
      clockRttMs: clock.rttMs,
      clientCpuPct: window.clientCpuPct,
      machineBusyPct: window.machineBusyPct,
      checkedDelivered: check.delivered
    }
  }, env)
}

/** How long the delivery check waits for connections still behind once the agents stopped pushing. */
const FLEET_DRAIN_MS = 10000

/** The fleet server's environment, the same for every arm. */
function fleetServerEnv () {
  const env = {
    BENCH_FLEET_AGENTS: String(config.fleetAgents),
    BENCH_SAMPLE_SIZE: String(config.fleetSampleSize),
    BENCH_FLEET_PHASES: fleetPhases,
    BENCH_MAX_AGENTS_PER_STREAM: String(Math.max(100, config.fleetPerConn)),
    BENCH_STOP_DELAY_MS: String(config.stopDelayMs)
  }
  if (agentMaxBuffered !== null) env.BENCH_MAX_BUFFERED_BYTES = String(agentMaxBuffered)
  if (agentFlushMs !== null) env.BENCH_FLUSH_INTERVAL_MS = String(agentFlushMs)
  return env
}

/**
 * The `floor` arm (informational): the same server with the agents pushing and no connection at all, measured
 * over a window as long as the arms' own. Its CPU is what both arms pay before a single sample is delivered:
 * the agents' timers and `sink.push` (the plugin's serialisation and history included), the server's idle work.
 * Reported beside the fleet table as CPU per second and per sample at the arms' expected delivery rate; the goal
 * check counts the whole server CPU of each arm, this included.
 */
function fleetFloorScenario () {
  return runScenario('fleet (floor)', FLEET_SERVER, async (server, client, progress) => {
    const { port } = server
    progress.step = `floor: warm-up load (${config.fleetWarmupMs} ms)`
    await postLoad(port, true)
    await sleep(config.fleetWarmupMs)
    progress.step = `floor: measured window (${config.fleetWindowMs} ms)`
    const window = expectOk(await client.call('fleetWindow', { port, ms: config.fleetWindowMs }), 'measured window')
    await postLoad(port, false)
    const seconds = window.ms / 1000
    const expectedPerSec = config.fleetConns * config.fleetPerConn / config.fleetIntervalSeconds
    return {
      pushesPerSec: window.pushes / seconds,
      cpuMsPerSec: window.serverCpuUs / 1000 / seconds,
      expectedPerSec,
      // Per sample the arms deliver in the same time (they deliver expectedPerSec): directly comparable with theirs.
      cpuUsPerSample: window.serverCpuUs / (expectedPerSec * seconds),
      serverSystemShare: window.serverSystemUs / window.serverCpuUs,
      serverElu: window.serverElu,
      machineBusyPct: window.machineBusyPct
    }
  }, fleetServerEnv())
}

async function postLoad (port, on) {
  const res = await request(`http://127.0.0.1:${port}/fleet/load?on=${on ? 1 : 0}`, { method: 'POST' })
  const body = await res.body.json()
  if (res.statusCode !== 200) throw new Error(`POST /fleet/load answered ${res.statusCode}`)
  return body
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main () {
  const started = Date.now()
  const agentDist = path.join(root, 'dist', 'esm', 'index.js')
  if (selected.some((impl) => impl.name === OURS)) {
    let distTime
    try {
      distTime = statSync(agentDist).mtimeMs
    } catch {
      console.error('bench: dist/esm/index.js is missing: run `npm run build` first')
      process.exit(2)
    }
    const newestLib = newestMtime(path.join(root, 'lib'))
    if (newestLib > distTime) console.log('WARNING: lib/ has changes newer than dist/: run `npm run build` to benchmark them.\n')
    snapshotDist()
  }
  const runFleet = scenarios.includes('fleet') && selected.some((impl) => impl.name === OURS)
  if (scenarios.includes('fleet') && !runFleet) console.log(`Note: the fleet scenario runs against ${OURS} only, which --only left out: skipped.\n`)

  console.log(`# SSE fan-out benchmark${quick ? ' (--quick: a smoke test; fixed costs dominate such small runs, quote full runs only)' : ''}`)
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${os.platform()} ${os.release()}`)
  console.log(`rounds: ${config.rounds}; throughput: ${config.clients} clients x ${config.events} events x ${config.size} B (after a ${config.warmEvents}-event warm-up); ` +
    `idle: ${config.idle} clients + ${config.idleEvents} events; churn: ${config.churn} cycles, ${config.churnParallel} in parallel, stopDelayMs ${config.stopDelayMs}`)
  console.log('trigger: one sample per macrotask (a setImmediate chain, as an agent transport delivers them); the synchronous burst is an extra, labelled measurement')
  console.log(`latency: ${config.latencyClients} clients x ${1000 / config.latencyIntervalMs} samples/s (one every ${config.latencyIntervalMs} ms, by timer) for ${config.latencySeconds} s; ` +
    `storm: ${config.stormClients} clients reconnecting within ${config.stormSpreadMs / 1000} s, one sample every ${config.stormIntervalMs} ms, GET /stats probed every ${config.stormProbeMs} ms` +
    (stormScaledFrom !== null ? ` (SCALED DOWN from ${stormScaledFrom}: ulimit -n is ${fdLimit})` : ''))
  console.log(`agent-sse: heartbeatIntervalMs 15000, maxClients 20000, maxClientsPerAgent 20000, logger off, maxBufferedBytes ${agentMaxBuffered === null ? 'default (65536)' : agentMaxBuffered + ' (raised with --agent-max-buffered)'}, flushIntervalMs ${agentFlushMs === null ? 'default (20)' : agentFlushMs + ' (set with --agent-flush-ms)'}`)
  if (runFleet) {
    const watchers = watchersPerAgent({ agents: config.fleetAgents, conns: config.fleetConns, perConn: config.fleetPerConn })
    console.log(`fleet: ${config.fleetAgents} agents x 1 sample/${config.fleetIntervalSeconds} s (${config.fleetSampleSize} B JSON, one per timer callback, ${PHASES_TEXT}); ` +
      `fleet arm ${config.fleetConns} connections x ${config.fleetPerConn} agents, single-agent arm ${config.fleetConns * config.fleetPerConn} connections; ` +
      `${Math.min(...watchers)}-${Math.max(...watchers)} connections per agent; warm-up ${config.fleetWarmupMs} ms, window ${config.fleetWindowMs} ms` +
      (fleetScale < 1 ? `\n  SCALED DOWN by ${1 / fleetScale}x from the issue's ${FLEET_TARGET.conns} x ${FLEET_TARGET.perConn} (= ${FLEET_TARGET.conns * FLEET_TARGET.perConn} single-agent connections): ulimit -n is ${fdLimit}` : ''))
  }
  if (snapshotDir !== null) console.log(`agent-sse: dist/esm copied to ${snapshotDir} for this run (a concurrent \`npm run build\` cannot change it mid-run)`)
  console.log(`implementations: ${selected.map((impl) => impl.name).join(', ')}\n`)

  const results = Object.fromEntries(selected.map((impl) => [impl.name, { throughput: [], idle: [], latency: [], churn: [], storm: [] }]))
  const fleetResults = { fleet: [], single: [], floor: [] }
  for (let round = 0; round < config.rounds; round++) {
    const order = selected.map((_, k) => selected[(k + round) % selected.length])
    for (const impl of order) {
      if (scenarios.includes('throughput')) {
        const a = await throughput(impl)
        results[impl.name].throughput.push(a)
        log(round, impl, 'throughput', a, (r) => `${fmt(r.eventsPerSec, 0)} events/s (${fmt(r.wallMs, 0)} ms; /broadcast answered after ${fmt(r.responseMs, 0)} ms; load client CPU ${fmt(r.clientCpuPct, 0)}%), ` +
          `${fmt(r.cpuUsPerEvent, 3)} CPU us/event, latency p50 ${fmtMs(r.latencyP50)} p99 ${fmtMs(r.latencyP99)} max ${fmtMs(r.latencyMax)} ms; ` +
          `burst: ${fmt(r.burstEventsPerSec, 0)} events/s, ${fmt(r.burstCpuUsPerEvent, 3)} CPU us/event, latency p99 ${fmtMs(r.burstLatencyP99)} ms; setup ${fmt(r.setupPerSec, 0)} conns/s`)
      }
      if (scenarios.includes('idle')) {
        const b = await idle(impl)
        results[impl.name].idle.push(b)
        log(round, impl, 'idle', b, (r) => `${fmt(r.rssPerConnKB, 2)} KB RSS/conn (${fmt(r.rssBeforeMB, 1)} -> ${fmt(r.rssAfterMB, 1)} MB), ${config.idleEvents} events to all in ${fmt(r.idleBroadcastMs, 0)} ms, ` +
          `${fmt(r.idleCpuUsPerEvent, 3)} CPU us/event, latency p50 ${fmtMs(r.idleLatencyP50)} p99 ${fmtMs(r.idleLatencyP99)} max ${fmtMs(r.idleLatencyMax)} ms`)
      }
      if (scenarios.includes('latency')) {
        const l = await latencyScenario(impl)
        results[impl.name].latency.push(l)
        log(round, impl, 'latency', l, (r) => `${fmt(r.cpuUsPerEvent, 3)} CPU us/event, latency p50 ${fmtMs(r.latencyP50)} p99 ${fmtMs(r.latencyP99)} max ${fmtMs(r.latencyMax)} ms (${r.latencyCount} events; load client CPU ${fmt(r.clientCpuPct, 0)}%)`)
      }
      if (impl.name === OURS && scenarios.includes('churn')) {
        const d = await churn(impl)
        results[impl.name].churn.push(d)
        log(round, impl, 'churn', d, (r) => `${fmt(r.cyclesPerSec, 0)} cycles/s, ${r.starts} start / ${r.stops} stop`)
      }
      if (scenarios.includes('storm')) {
        const e = await stormScenario(impl)
        results[impl.name].storm.push(e)
        log(round, impl, 'storm', e, (r) => `${r.clients} clients: all connected after ${fmt(r.allConnectedMs, 0)} ms, all streaming after ${fmt(r.allStreamingMs, 0)} ms ` +
          `(per client p50 ${fmtMs(r.perClientP50)} p99 ${fmtMs(r.perClientP99)} max ${fmtMs(r.perClientMax)} ms), server loop delay p99 ${fmtMs(r.loopDelayP99Ms)} max ${fmtMs(r.loopDelayMaxMs)} ms, ` +
          `probe GET /stats p50 ${fmtMs(r.probeP50Ms)} p99 ${fmtMs(r.probeP99Ms)} max ${fmtMs(r.probeMaxMs)} ms (${r.probes}), ${r.errors} errors ${r.errors > 0 ? JSON.stringify(r.errorKinds) + ' ' : ''}(${r.attempts} attempts), ` +
          `server CPU ${fmt(r.serverCpuPct, 0)}%, sample latency p99 ${fmtMs(r.latencyP99)} ms`)
      }
    }
    if (runFleet) {
      // The arm that goes first alternates per round.
      const arms = round % 2 === 0 ? fleetArms : [...fleetArms].reverse()
      for (const mode of arms) {
        const f = await fleetScenario(mode)
        fleetResults[mode].push(f)
        if (mode === 'floor') {
          log(round, { name: 'fleet/floor' }, 'fleet', f, (r) => `no connection: ${fmt(r.pushesPerSec, 0)} pushes/s, server ${fmt(r.cpuMsPerSec, 1)} ms CPU/s ` +
            `(${fmt(100 * r.serverSystemShare, 0)}% of it system) = ${fmt(r.cpuUsPerSample, 2)} us per sample at the arms' ${fmt(r.expectedPerSec, 0)} samples/s, ` +
            `machine ${r.machineBusyPct === null ? '?' : fmt(r.machineBusyPct, 0)}% busy`)
          continue
        }
        log(round, { name: `fleet/${mode}` }, 'fleet', f, (r) => `${fmt(r.deliveredPerSec, 0)} samples/s delivered (of ${fmt(r.expectedPerSec, 0)}), ` +
          `${fmt(r.cpuUsPerSample, 2)} CPU us/sample (server ${fmt(r.serverCpuPct, 1)}% CPU, ${fmt(100 * r.serverSystemShare, 0)}% of it system), ` +
          `${r.writeSyscallsPerSample === null ? '?' : fmt(r.writeSyscallsPerSample, 2)} write syscalls/sample, ${fmt(r.statusesPerSec, 1)} status events/s, ` +
          `${fmt(r.rssPerConnKB, 2)} KB RSS/conn (JS heap ${fmt(r.heapPerConnKB, 2)} KB, external ${fmt(r.externalPerConnKB, 2)} KB), connected in ${fmt(r.connectMs, 0)} ms, latency p50 ${fmtMs(r.latencyP50)} p99 ${fmtMs(r.latencyP99)} ms (server loop delay p99 ${fmtMs(r.loopDelayP99Ms)} max ${fmtMs(r.loopDelayMaxMs)} ms), ` +
          `client ${fmt(r.clientCpuPct, 0)}% CPU, machine ${r.machineBusyPct === null ? '?' : fmt(r.machineBusyPct, 0)}% busy`)
      }
    }
  }

  let failed = report(results)
  if (runFleet) failed = reportFleet(fleetResults) || failed
  console.log(`\n(total ${((Date.now() - started) / 1000).toFixed(1)} s)`)
  if (typeof args.json === 'string') {
    writeFileSync(args.json, JSON.stringify({ config, node: process.version, results, fleet: fleetResults }, null, 2) + '\n')
    console.log(`raw results written to ${args.json}`)
  }
  return failed ? 1 : 0
}

function log (round, impl, scenario, result, describe) {
  const what = `[round ${round + 1}/${config.rounds}] ${impl.name.padEnd(16)} ${scenario.padEnd(10)}`
  console.log(result.status === 'ok' ? `${what} ${describe(result)}` : `${what} ${result.status}: ${result.error}`)
}

/** Median of a metric over the rounds, or the failure status when any round did not complete. */
function median (values) {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

function summarize (runs, key) {
  if (runs.length === 0) return { missing: true }
  const bad = runs.find((run) => run.status !== 'ok')
  if (bad) return { status: bad.status }
  return { value: median(runs.map((run) => run[key])) }
}

/** The plugin's default flush window (flushIntervalMs): the latency goal is this + 5 ms at an agent's pace. */
const FLUSH_INTERVAL_MS = 20

function report (results) {
  const m = (name, scenario, key) => results[name] ? summarize(results[name][scenario], key) : { missing: true }
  const cell = (x, digits) => x.value !== undefined && x.value !== null ? fmt(x.value, digits) : (x.status ?? 'n/a')
  const ratio = (name, scenario, key, reference, referenceKey = key) => {
    const mine = m(name, scenario, key).value
    const theirs = m(reference, scenario, referenceKey).value
    if (mine === undefined || mine === null || theirs === undefined || theirs === null || theirs === 0) return 'n/a'
    return `${(mine / theirs).toFixed(2)}x`
  }
  const latency = (name, scenario, prefix) => `${cell(m(name, scenario, `${prefix}P50`), 1)} / ${cell(m(name, scenario, `${prefix}P99`), 1)} / ${cell(m(name, scenario, `${prefix}Max`), 1)}`
  const ran = (scenario) => scenarios.includes(scenario) && selected.some((impl) => results[impl.name][scenario].length > 0)
  const rounds = `median of ${config.rounds} round${config.rounds > 1 ? 's' : ''}`

  if (ran('throughput')) {
    console.log(`\n## Fan-out: one sample per macrotask (${rounds})\n`)
    console.log(`${config.clients} clients x ${config.events} events x ${config.size} B, each event pushed in its own macrotask (a setImmediate chain, as an agent transport delivers them). ` +
      'Latency = the client\'s receipt - the push time in the sample, over every event of every client.\n')
    console.log('| implementation | events/s | CPU µs/event | vs node:http res.write | vs @fastify/sse | latency p50 / p99 / max (ms) | setup conns/s | vs Fastify + hijack | vs node:http |')
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const impl of selected) {
      const n = impl.name
      console.log(`| ${impl.label} | ${cell(m(n, 'throughput', 'eventsPerSec'), 0)} | ${cell(m(n, 'throughput', 'cpuUsPerEvent'), 3)} | ${ratio(n, 'throughput', 'cpuUsPerEvent', BASELINE)} | ` +
        `${ratio(n, 'throughput', 'cpuUsPerEvent', FASTIFY_SSE)} | ${latency(n, 'throughput', 'latency')} | ${cell(m(n, 'throughput', 'setupPerSec'), 0)} | ` +
        `${ratio(n, 'throughput', 'setupPerSec', HIJACK)} | ${ratio(n, 'throughput', 'setupPerSec', BASELINE)} |`)
    }
    console.log(`\n### Synchronous burst (not how transports deliver) (${rounds})\n`)
    console.log(`The same ${config.events} events pushed in one synchronous loop to the same ${config.clients} clients: socket corking then carries the whole burst in one write per client, ` +
      'which no agent transport gets.\n')
    console.log('| implementation | events/s | CPU µs/event | vs node:http res.write | vs @fastify/sse | latency p50 / p99 / max (ms) |')
    console.log('|---|---:|---:|---:|---:|---:|')
    for (const impl of selected) {
      const n = impl.name
      console.log(`| ${impl.label}, synchronous burst (not how transports deliver) | ${cell(m(n, 'throughput', 'burstEventsPerSec'), 0)} | ${cell(m(n, 'throughput', 'burstCpuUsPerEvent'), 3)} | ` +
        `${ratio(n, 'throughput', 'burstCpuUsPerEvent', BASELINE)} | ${ratio(n, 'throughput', 'burstCpuUsPerEvent', FASTIFY_SSE)} | ${latency(n, 'throughput', 'burstLatency')} |`)
    }
    const clientBound = selected.filter((impl) => results[impl.name].throughput.some((run) => run.status === 'ok' && (run.clientCpuPct >= 90 || run.burstClientCpuPct >= 90)))
    if (clientBound.length > 0) {
      console.log(`\nNote: the load client used >= 90% of a core during a broadcast for ${clientBound.map((impl) => impl.name).join(', ')}: ` +
        'those events/s and latencies may be limited by the client, not by the server.')
    }
    console.log('\nCPU = server user+system time per delivered event (ratios: lower is better). Setup = connections per second until every client had its response head, at most ' +
      config.connectParallel + ' waiting at once, after ' + config.warmConnections + ' warm-up connections; the median of ' + (config.setupBatches + 1) + ' batches of ' + config.clients + ' per round (ratios: higher is better).')
  }

  if (ran('idle')) {
    console.log(`\n## Idle connections (${rounds})\n`)
    console.log(`${config.idle} idle clients (RSS after - before, each after a full GC, / clients), then ${config.idleEvents} events, one per macrotask, to every one of them.\n`)
    console.log('| implementation | RSS/idle conn (KB) | vs node:http | CPU µs/event | vs node:http res.write | vs @fastify/sse | latency p50 / p99 / max (ms) |')
    console.log('|---|---:|---:|---:|---:|---:|---:|')
    for (const impl of selected) {
      const n = impl.name
      console.log(`| ${impl.label} | ${cell(m(n, 'idle', 'rssPerConnKB'), 2)} | ${ratio(n, 'idle', 'rssPerConnKB', BASELINE)} | ${cell(m(n, 'idle', 'idleCpuUsPerEvent'), 3)} | ` +
        `${ratio(n, 'idle', 'idleCpuUsPerEvent', BASELINE)} | ${ratio(n, 'idle', 'idleCpuUsPerEvent', FASTIFY_SSE)} | ${latency(n, 'idle', 'idleLatency')} |`)
    }
  }

  if (ran('latency')) {
    console.log(`\n## Latency at an agent's pace (${rounds})\n`)
    console.log(`${config.latencyClients} clients x ${1000 / config.latencyIntervalMs} samples/s (one every ${config.latencyIntervalMs} ms, by timer) for ${config.latencySeconds} s; ` +
      `fastify-agent-sse at its defaults (flushIntervalMs ${FLUSH_INTERVAL_MS}: its latency includes up to one flush window).\n`)
    console.log('| implementation | CPU µs/event | vs node:http res.write | vs @fastify/sse | latency p50 / p99 / max (ms) |')
    console.log('|---|---:|---:|---:|---:|')
    for (const impl of selected) {
      const n = impl.name
      console.log(`| ${impl.label} | ${cell(m(n, 'latency', 'cpuUsPerEvent'), 3)} | ${ratio(n, 'latency', 'cpuUsPerEvent', BASELINE)} | ${ratio(n, 'latency', 'cpuUsPerEvent', FASTIFY_SSE)} | ${latency(n, 'latency', 'latency')} |`)
    }
  }

  if (ran('storm')) {
    console.log(`\n## Reconnect storm (${rounds})\n`)
    console.log(`${config.stormClients} connected clients drop at once and reconnect, spread evenly over ${config.stormSpreadMs / 1000} s, while the server pushes one sample every ${config.stormIntervalMs} ms; ` +
      `every client must get its 200 head and then a sample (a refused or reset attempt retries after ${config.stormRetryMs} ms)` +
      (stormScaledFrom !== null ? `; SCALED DOWN from ${stormScaledFrom} clients (ulimit -n ${fdLimit})` : '') + '.\n')
    console.log('| implementation | clients | all connected (ms) | all streaming (ms) | per client: attempt -> first sample p50 / p99 / max (ms) | server loop delay p99 / max (ms) | probe GET /stats p50 / p99 / max (ms) | errors (attempts) | server CPU % | sample latency p50 / p99 (ms) |')
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const impl of selected) {
      const n = impl.name
      const s = (key, digits) => cell(m(n, 'storm', key), digits)
      console.log(`| ${impl.label} | ${s('clients', 0)} | ${s('allConnectedMs', 0)} | ${s('allStreamingMs', 0)} | ${s('perClientP50', 1)} / ${s('perClientP99', 1)} / ${s('perClientMax', 1)} | ` +
        `${s('loopDelayP99Ms', 1)} / ${s('loopDelayMaxMs', 1)} | ${s('probeP50Ms', 1)} / ${s('probeP99Ms', 1)} / ${s('probeMaxMs', 1)} | ${s('errors', 0)} (${s('attempts', 0)}) | ${s('serverCpuPct', 0)} | ${s('latencyP50', 1)} / ${s('latencyP99', 1)} |`)
    }
    console.log('\nTimes from the moment every client dropped; a client is streaming once its first sample arrived (a server that replays its latest sample ' +
      'to a joining client does not wait for the next one; the sample latency column counts the samples after each client\'s first). ' +
      'Loop delay: monitorEventLoopDelay (10 ms resolution) in the server over the storm. ' +
      `Probe: GET /stats from the orchestrator every ${config.stormProbeMs} ms throughout, round trip.`)
  }

  const oursRuns = results[OURS] ? [...results[OURS].throughput, ...results[OURS].idle, ...results[OURS].latency] : []
  if (oursRuns.length > 0 && oursRuns.every((run) => run.status === 'ok')) {
    console.log(`\nagent-sse ran with maxBufferedBytes ${agentMaxBuffered === null ? 'at its default (65536)' : `raised to ${agentMaxBuffered}`}: every client received every event, in order (nothing was conflated).`)
  }
  return reportProblemsAndChecks(results, m, ran)
}

function reportProblemsAndChecks (results, m, ran) {
  const cell = (x, digits) => x.value !== undefined ? fmt(x.value, digits) : (x.status ?? 'n/a')
  let failed = false
  const problems = []
  for (const impl of selected) {
    for (const [scenario, runs] of Object.entries(results[impl.name])) {
      runs.forEach((run, k) => {
        if (run.status !== 'ok') {
          failed = true
          problems.push(`- ${impl.name} ${scenario} round ${k + 1}: ${run.status}: ${run.error}`)
        }
      })
    }
  }

  if (results[OURS]?.churn.length > 0) {
    const churnRuns = results[OURS].churn
    const cps = summarize(churnRuns, 'cyclesPerSec')
    const bad = churnRuns.find((run) => run.status !== 'ok')
    const counts = bad === undefined
      ? `the adapter saw ${churnRuns.map((run) => `${run.starts} start / ${run.stops} stop`).join(', ')} (expected 1 / 1 per round): PASS`
      : `FAIL (${bad.status}: ${bad.error})`
    console.log(`\nLifecycle churn (agent-sse): ${config.churn} connect/disconnect cycles, ${config.churnParallel} in parallel, one agent, stopDelayMs ${config.stopDelayMs}: ` +
      `${cell(cps, 0)} cycles/s (median); ${counts}`)
  }

  if (problems.length > 0) {
    console.log('\n## Runs that did not complete (reported as FAILED/TIMEOUT above, never as numbers)\n')
    for (const line of problems) console.log(line)
    if (problems.some((line) => line.startsWith(`- ${OURS}`) && /lost or reordered/.test(line)) && agentMaxBuffered === null) {
      console.log('\nNote: fastify-agent-sse conflates metrics frames for a client with more than maxBufferedBytes (default 65536) queued; ' +
        'if the load client cannot keep up, re-run with --agent-max-buffered=1048576 (and say so when quoting the numbers).')
    }
  }

  if (results[OURS] && (ran('throughput') || ran('idle') || ran('latency'))) {
    console.log('\n## Target checks (informative; plugin defaults, ratios from this run)\n')
    const checks = [
      ['throughput: CPU/event <= 0.5x node:http res.write', 'throughput', 'cpuUsPerEvent', BASELINE, 0.5, 'le'],
      ['throughput: CPU/event <= 0.35x @fastify/sse', 'throughput', 'cpuUsPerEvent', FASTIFY_SSE, 0.35, 'le'],
      ['idle: CPU/event <= 0.5x node:http res.write', 'idle', 'idleCpuUsPerEvent', BASELINE, 0.5, 'le'],
      ['idle: CPU/event <= 0.35x @fastify/sse', 'idle', 'idleCpuUsPerEvent', FASTIFY_SSE, 0.35, 'le'],
      [`latency: p99 <= flushIntervalMs (${FLUSH_INTERVAL_MS}) + 5 ms at ${config.latencyClients} clients x ${1000 / config.latencyIntervalMs} samples/s`, 'latency', 'latencyP99', null, FLUSH_INTERVAL_MS + 5, 'le'],
      ['setup conns/s >= 0.9x Fastify + hijack', 'throughput', 'setupPerSec', HIJACK, 0.9, 'ge'],
      ['RSS/idle conn <= 1.0x node:http res.write', 'idle', 'rssPerConnKB', BASELINE, 1.0, 'le']
    ]
    for (const [label, scenario, key, reference, bound, way] of checks) {
      if (!ran(scenario)) continue
      const mine = m(OURS, scenario, key).value
      const theirs = reference === null ? 1 : m(reference, scenario, key).value
      if (mine === undefined || mine === null || theirs === undefined || theirs === null) {
        console.log(`SKIP ${label} (${mine === undefined || mine === null ? 'agent-sse' : reference} not measured)`)
        continue
      }
      const actual = mine / theirs
      const pass = way === 'le' ? actual <= bound : actual >= bound
      const baselineP99 = m(BASELINE, scenario, key).value
      const context = reference === null && baselineP99 !== undefined ? ` (node:http res.write: ${baselineP99.toFixed(1)} ms)` : ''
      console.log(`${pass ? 'PASS' : 'FAIL'} ${label}: ${reference === null ? `${actual.toFixed(1)} ms${context}` : `${actual.toFixed(2)}x`}`)
    }
  }
  return failed
}

/** The fleet scenario's table (medians over the rounds); true if a run did not complete. */
function reportFleet (fleetResults) {
  const arms = [
    ['fleet', `fleet connections (${config.fleetConns} x ${config.fleetPerConn} agents)`],
    ['single', `single-agent connections (${config.fleetConns * config.fleetPerConn})`]
  ]
  const m = {}
  for (const [mode] of arms) {
    const runs = fleetResults[mode]
    m[mode] = Object.fromEntries(['connections', 'deliveredPerSec', 'expectedPerSec', 'cpuUsPerSample', 'serverCpuPct', 'serverElu', 'rssPerConnKB', 'rssPerSubscriptionKB',
      'latencyP50', 'latencyP99', 'latencyMax', 'clientCpuPct', 'machineBusyPct', 'connectMs', 'clockRttMs', 'writeSyscallsPerSample', 'loopDelayMaxMs'].map((key) => [key, summarize(runs, key)]))
  }
  const cell = (x, digits) => x.value !== undefined && x.value !== null ? fmt(x.value, digits) : (x.status ?? 'n/a')
  const vsSingle = (mode, key) => {
    const mine = m[mode][key].value
    const single = m.single[key].value
    if (mine === undefined || single === undefined || mine === 0) return 'n/a'
    return `${(mine / single).toFixed(2)}x`
  }
  console.log(`\n## Fleet streams (median of ${config.rounds} round${config.rounds > 1 ? 's' : ''}; ratios vs single-agent connections)\n`)
  console.log(`${config.fleetAgents} agents x 1 sample/${config.fleetIntervalSeconds} s (${config.fleetSampleSize} B, one per timer callback, ${PHASES_TEXT}), ` +
    `${config.fleetConns * config.fleetPerConn / config.fleetAgents} connections per agent on average; measured over ${config.fleetWindowMs / 1000} s after a ${config.fleetWarmupMs / 1000} s warm-up` +
    (fleetScale < 1 ? `; SCALED DOWN ${1 / fleetScale}x from the issue's ${FLEET_TARGET.conns} x ${FLEET_TARGET.perConn} (ulimit -n ${fdLimit} cannot hold ${FLEET_TARGET.conns * FLEET_TARGET.perConn} single-agent connections)` : '') + '\n')
  console.log('| connections | delivered samples/s (expected) | server CPU µs/sample | ratio | write syscalls/sample | server CPU % (ELU) | RSS/conn (KB) | ratio | RSS/watched agent (KB) | ratio | latency p50 / p99 / max (ms) | load client CPU % | machine busy % |')
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const [mode, label] of arms) {
    const r = m[mode]
    console.log(`| ${label} | ${cell(r.deliveredPerSec, 0)} (${cell(r.expectedPerSec, 0)}) | ${cell(r.cpuUsPerSample, 2)} | ${vsSingle(mode, 'cpuUsPerSample')} | ${cell(r.writeSyscallsPerSample, 2)} | ` +
      `${cell(r.serverCpuPct, 1)} (${r.serverElu.value === undefined ? 'n/a' : fmt(100 * r.serverElu.value, 0)}%) | ${cell(r.rssPerConnKB, 2)} | ${vsSingle(mode, 'rssPerConnKB')} | ` +
      `${cell(r.rssPerSubscriptionKB, 3)} | ${vsSingle(mode, 'rssPerSubscriptionKB')} | ${cell(r.latencyP50, 2)} / ${cell(r.latencyP99, 2)} / ${cell(r.latencyMax, 1)} | ` +
      `${cell(r.clientCpuPct, 0)} | ${cell(r.machineBusyPct, 0)} |`)
  }
  console.log('\nServer CPU = user+system time of the server process over the window (process.cpuUsage, from GET /stats at both ends) / samples ' +
    'the load client received in it; it includes the adapter\'s own timers and sink.push (the same in both arms), heartbeats (one per connection per 15 s) and, ' +
    'in the fleet arm, the status feed. Write syscalls = the server\'s syscw (/proc/self/io) over the window / delivered samples. RSS = (RSS after connecting - RSS before), each after a full GC, with the agents already running and silent, ' +
    '/ connections (and / (connection, agent) pairs). Latency = the client\'s receipt time - the push time in the sample (taken just before sink.push), ' +
    'the server\'s clock mapped to the client\'s by the min-RTT GET /clock (RTT ' + cell(m.fleet.clockRttMs, 2) + ' ms); both processes are on this machine. ' +
    'Every connection was checked frame by frame: ids increase, no sample lost, repeated or reordered per agent, each agent\'s last sample received.')
  const problems = []
  for (const mode of [...arms.map(([mode]) => mode), 'floor']) {
    fleetResults[mode].forEach((run, k) => {
      if (run.status !== 'ok') problems.push(`- fleet ${mode} round ${k + 1}: ${run.status}: ${run.error}`)
    })
  }
  if (problems.length > 0) {
    console.log('\n### Fleet runs that did not complete (reported as FAILED/TIMEOUT above, never as numbers)\n')
    for (const line of problems) console.log(line)
  }
  const fleetCpu = m.fleet.cpuUsPerSample.value
  const singleCpu = m.single.cpuUsPerSample.value
  reportFleetFloor(fleetResults.floor, fleetCpu, singleCpu)
  console.log('\n### Fleet target check (informative)\n')
  if (fleetCpu === undefined || singleCpu === undefined) {
    console.log('SKIP fleet CPU/sample <= 1/5 of single-agent connections (not measured)')
  } else {
    const factor = singleCpu / fleetCpu
    console.log(`${factor >= 5 ? 'PASS' : 'FAIL'} fleet CPU/sample >= 5x lower than single-agent connections: ${factor.toFixed(2)}x lower`)
  }
  return problems.length > 0
}

/**
 * The `floor` arm's line (informational only: the target check counts each arm's whole server CPU, floor
 * included): what the server costs with the agents pushing and nobody connected, and each arm above it.
 */
function reportFleetFloor (runs, fleetCpu, singleCpu) {
  if (runs.length === 0) return
  const floor = summarize(runs, 'cpuUsPerSample')
  const floorMs = summarize(runs, 'cpuMsPerSec')
  console.log(`\n### The agents' own cost: no connection (informational, median of ${runs.length}; not part of the target check)\n`)
  if (floor.value === undefined) {
    console.log(`not measured: ${floor.status ?? 'missing'}`)
    return
  }
  const perRound = runs.map((run) => fmt(run.cpuMsPerSec, 1)).join(', ')
  console.log(`The same server with its ${config.fleetAgents} agents pushing (their timers, sink.push, the plugin's serialisation and history) and no connection: ` +
    `${fmt(floorMs.value, 1)} ms CPU/s (rounds: ${perRound}) = ${fmt(floor.value, 2)} µs per sample at the arms' ${fmt(runs[0].expectedPerSec, 0)} samples/s. ` +
    'Both arms pay it before delivering anything.')
  if (fleetCpu === undefined || singleCpu === undefined) return
  const fleetAbove = fleetCpu - floor.value
  const singleAbove = singleCpu - floor.value
  console.log(`Above it: fleet connections ${fmt(fleetAbove, 2)} µs/sample, single-agent connections ${fmt(singleAbove, 2)} µs/sample` +
    (fleetAbove > 0 ? ` (${(singleAbove / fleetAbove).toFixed(2)}x).` : '.') +
    ` 5x lower than single-agent connections is ${fmt(singleCpu / 5, 2)} µs/sample: ` +
    (singleCpu / 5 > floor.value ? `${fmt(singleCpu / 5 - floor.value, 2)} µs/sample above this floor.` : `${fmt(floor.value - singleCpu / 5, 2)} µs/sample below this floor.`))
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

function fmtMs (value) {
  return value === null || value === undefined ? 'n/a' : fmt(value, 2)
}

/** The soft limit on open files (`ulimit -n`), or null when it cannot be read. */
function openFileLimit () {
  try {
    const text = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()
    return text === 'unlimited' ? Infinity : Number.parseInt(text, 10) || null
  } catch {
    return null
  }
}

// A private copy of dist/esm for the servers: `npm run build` starts by deleting dist/, so another build during
// a run would otherwise make the next server fail to start (or load half a build). It lives in a temporary
// directory (not in the work tree) beside a package.json ("type": "module") and a symlink to this package's
// node_modules, so its bare imports resolve to the very same dependencies.
let snapshotDir = null

function snapshotDist () {
  if (process.env.BENCH_AGENT_SSE_MODULE) return // the caller picked a build
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-sse-bench-'))
  snapshotDir = dir
  cpSync(path.join(root, 'dist', 'esm'), path.join(dir, 'esm'), { recursive: true })
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }) + '\n')
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir')
  process.env.BENCH_AGENT_SSE_MODULE = pathToFileURL(path.join(dir, 'esm', 'index.js')).href
}

function removeSnapshot () {
  if (snapshotDir === null) return
  try {
    rmSync(snapshotDir, { recursive: true, force: true })
  } catch {}
  snapshotDir = null
}

function fmt (value, digits) {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function parseArgs (argv) {
  const out = {}
  for (const arg of argv) {
    const match = /^--([^=]+)(?:=(.*))?$/.exec(arg)
    if (match) out[match[1]] = match[2] ?? true
  }
  return out
}

function version (name) {
  try {
    return JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

function newestMtime (dir) {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs)
  }
  return newest
}

main().then((code) => {
  killAll()
  process.exitCode = code
}, (err) => {
  console.error('bench:', err)
  killAll()
  process.exitCode = 1
})
