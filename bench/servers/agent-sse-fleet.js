// fastify-agent-sse for the fleet scenario (bench/run.js --scenarios=fleet): many agents, each pushing one sample
// per second the way a real transport does (one sample per macrotask, each agent on its own timer, the agents'
// phases spread evenly over the second), watched either over fleet connections (GET /metrics/stream?agents=…)
// or over single-agent connections (GET /agents/:id/metrics/stream). The same server serves both arms.
//
// Every agent is held (a manual hold, started before the server announces itself) so that the agents' own
// state exists before the RSS baseline and the connections measured are connections only. The agents only push
// while the load is on (POST /fleet/load?on=1), so connecting measures connections, not samples.
//
//   POST /fleet/load?on=1|0  starts/stops the pushes; `on=0` answers { pushed: [last n per agent] }
//   GET  /clock              { now }: this process's high-resolution epoch time in ms (for the latency clock offset)
//   GET  /stats[?gc=1][&conns=1] { clients (SSE connections, with conns=1), subscriptions, cpu, rss, pushes, and since
//                            the previous /stats: elu, loopDelay { p99Ms, maxMs }; write syscalls so far (syscw, wchar) }
//
// A sample is `{"n":<per-agent counter from 1>,"t":<push time, epoch ms>,…,"pad":"xx…"}`, about BENCH_SAMPLE_SIZE
// bytes of JSON; `t` is read right before sink.push, so the latency includes the plugin's serialisation.
//
// Phases (BENCH_FLEET_PHASES): `grouped` (default) puts agent i at i/N of the second, so that the agents a fleet
// connection watches (consecutive ones, see fleet-layout.js) push one after the other within a short stretch of it;
// `scattered` spreads each connection's agents over the whole second (agent i at (i × 419 mod N)/N), as unrelated
// agents' clocks fall: more of a connection's samples then come alone in their write window.
//
// Env: BENCH_FLEET_AGENTS (default 500), BENCH_FLEET_PHASES, BENCH_SAMPLE_SIZE (default 256), BENCH_STOP_DELAY_MS,
// BENCH_MAX_BUFFERED_BYTES, BENCH_FLUSH_INTERVAL_MS (default: the plugin's), BENCH_MAX_AGENTS_PER_STREAM (default 100),
// BENCH_AGENT_SSE_MODULE (see agent-sse.js).
import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import { agentId } from '../fleet-layout.js'
import { announce, stats } from './common.js'

const { default: agentSse } = await import(process.env.BENCH_AGENT_SSE_MODULE || 'fastify-agent-sse')

const AGENTS = Number(process.env.BENCH_FLEET_AGENTS ?? 500)
const SAMPLE_SIZE = Number(process.env.BENCH_SAMPLE_SIZE ?? 256)
const INTERVAL_SECONDS = 1
const PHASES = process.env.BENCH_FLEET_PHASES ?? 'grouped'
if (PHASES !== 'grouped' && PHASES !== 'scattered') throw new Error(`BENCH_FLEET_PHASES must be grouped or scattered (got ${PHASES})`)
const epochNow = () => performance.timeOrigin + performance.now()

// `{"n":1234567,"t":1750000000000.123,"cpu":0.123,"mem":0.456,"pad":""}` is about 70 bytes.
const PAD = 'x'.repeat(Math.max(0, SAMPLE_SIZE - 70))
const BASE = performance.now() // every agent's phase is relative to this, whenever its task starts

let pushing = false
let pushes = 0
const counts = { starts: 0, stops: 0 }
/** agent index -> { n, slot (the schedule slot armed last), timer, sink, taskId } while its task runs */
const agents = new Map()
const lastN = new Array(AGENTS).fill(0)

function indexOf (id) {
  const index = Number(id.slice('agent-'.length))
  if (!id.startsWith('agent-') || !Number.isInteger(index) || index < 0 || index >= AGENTS) throw new Error(`unknown agent ${id}`)
  return index
}

/** Where in the period agent `index` pushes, in AGENTS slots: a permutation of the indexes when scattered. */
function phaseSlot (index) {
  if (PHASES === 'grouped') return index
  // 419 is prime and does not divide 500 (the default): a stride coprime with AGENTS visits every slot once.
  let stride = 419
  while (gcd(stride, AGENTS) !== 1) stride++
  return (index * stride) % AGENTS
}

function gcd (a, b) {
  return b === 0 ? a : gcd(b, a % b)
}

/** Agent `index` fires at BASE + (phaseSlot(index) / AGENTS + k) × period: its own timer, re-armed from the schedule (no drift). */
function arm (index, agent, periodMs) {
  const phase = (phaseSlot(index) / AGENTS) * periodMs
  const now = performance.now()
  // Timers may fire up to a millisecond before `due` by this clock: never the same slot twice.
  const k = Math.max(agent.slot + 1, Math.floor((now - BASE - phase) / periodMs) + 1)
  agent.slot = k
  const due = BASE + phase + k * periodMs
  agent.timer = setTimeout(() => {
    if (pushing) {
      const n = ++agent.n
      lastN[index] = n
      pushes++
      agent.sink.push({ n, t: epochNow(), cpu: (n % 100) / 100, mem: (index % 100) / 100, pad: PAD })
    }
    if (agents.get(index) === agent) arm(index, agent, periodMs)
  }, Math.max(0, due - now))
}

let taskSeq = 0
const adapter = {
  async startMetricsStreaming (id, { intervalSeconds }, sink) {
    counts.starts++
    const index = indexOf(id)
    const agent = { n: lastN[index], slot: -Infinity, timer: null, sink, taskId: `fleet-${++taskSeq}` }
    agents.set(index, agent)
    arm(index, agent, intervalSeconds * 1000)
    return { taskId: agent.taskId }
  },
  async stopMetricsStreaming (id, taskId) {
    counts.stops++
    const index = indexOf(id)
    const agent = agents.get(index)
    if (agent?.taskId !== taskId) return
    clearTimeout(agent.timer)
    agents.delete(index)
  },
  async getCurrentMetrics () {
    return {}
  },
  agentExists (id) {
    try {
      indexOf(id)
      return true
    } catch {
      return false
    }
  }
}

const options = {
  adapter,
  stopDelayMs: Number(process.env.BENCH_STOP_DELAY_MS ?? 2000),
  heartbeatIntervalMs: 15000,
  maxClients: 25000,
  maxClientsPerAgent: 25000,
  maxHolds: Math.max(1000, AGENTS),
  maxAgentsPerStream: Number(process.env.BENCH_MAX_AGENTS_PER_STREAM ?? 100)
}
if (process.env.BENCH_MAX_BUFFERED_BYTES) options.maxBufferedBytes = Number(process.env.BENCH_MAX_BUFFERED_BYTES)
if (process.env.BENCH_FLUSH_INTERVAL_MS) options.flushIntervalMs = Number(process.env.BENCH_FLUSH_INTERVAL_MS)

const app = Fastify({ logger: false })
await app.register(agentSse, options)

app.post('/fleet/load', async (request) => {
  pushing = new URL(request.url, 'http://x').searchParams.get('on') === '1'
  return { pushing, pushes, pushed: pushing ? undefined : lastN }
})

app.get('/clock', async () => ({ now: epochNow() }))

/** Write syscalls and bytes of this process so far (Linux: /proc/self/io), or nulls. */
function writeCounters () {
  try {
    const io = readFileSync('/proc/self/io', 'latin1')
    return { syscw: Number(/syscw: (\d+)/.exec(io)[1]), wchar: Number(/wchar: (\d+)/.exec(io)[1]) }
  } catch {
    return { syscw: null, wchar: null }
  }
}

let eluBase = performance.eventLoopUtilization()
const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()
app.get('/stats', async (request) => {
  let subscriptions = 0
  let notActive = 0
  for (let i = 0; i < AGENTS; i++) {
    const status = app.streamLifecycle.status(agentId(i))
    subscriptions += status.subscribers
    if (status.state !== 'active') notActive++
  }
  // Event loop utilisation and delay since the previous /stats call.
  const elu = performance.eventLoopUtilization(eluBase)
  eluBase = performance.eventLoopUtilization()
  const delay = { p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 }
  loopDelay.reset()
  // Counting connections builds a list of them all: only when asked (not at the edges of a measured window).
  const clients = request.url.includes('conns=1') ? app.sseConnections().length : null
  const memory = process.memoryUsage()
  return stats(request.url, clients, {
    subscriptions,
    notActive,
    pushes,
    starts: counts.starts,
    stops: counts.stops,
    heapUsed: memory.heapUsed,
    external: memory.external,
    elu: elu.utilization,
    loopDelay: delay,
    ...writeCounters()
  })
})

await app.ready()
// The agents' own state (tasks, histories) exists before anyone connects: see the header.
await Promise.all(Array.from({ length: AGENTS }, (_, i) => app.streamLifecycle.hold(agentId(i), { intervalSeconds: INTERVAL_SECONDS })))
await app.listen({ port: 0, host: '127.0.0.1' })
const { adapter: _adapter, ...config } = options
announce(app.server.address().port, { name: 'agent-sse-fleet', path: '/metrics/stream', config: { ...config, agents: AGENTS, phases: PHASES, sampleSize: SAMPLE_SIZE } })
