// fastify-agent-sse (this package, from dist/ via the package's self-reference: run `npm run build` first)
// with a bench adapter. Reliability features stay ON at their defaults (heartbeats every 15 s, per-client
// maxBufferedBytes conflation, stall timeout); only the client limits are raised for 10,000+ clients.
// Env: BENCH_STOP_DELAY_MS (default 2000), BENCH_MAX_BUFFERED_BYTES and BENCH_FLUSH_INTERVAL_MS (default: the plugin's),
// BENCH_AGENT_SSE_MODULE (default: the package's self-reference, i.e. dist/).
import Fastify from 'fastify'
import { announce, clock, parseBroadcast, stats, trigger } from './common.js'

// bench/run.js points BENCH_AGENT_SSE_MODULE at its own copy of dist/esm, so that a concurrent `npm run build`
// (which deletes dist/ first) cannot pull the plugin away from under a running benchmark.
const { default: agentSse } = await import(process.env.BENCH_AGENT_SSE_MODULE || 'fastify-agent-sse')

const AGENT = 'bench'
const PATH = `/agents/${AGENT}/metrics/stream?interval_seconds=1`

const counts = { starts: 0, stops: 0 }
let task = null // { taskId, sink } of the running agent stream
let taskSeq = 0

const adapter = {
  async startMetricsStreaming (agentId, { intervalSeconds, signal }, sink) {
    counts.starts++
    const taskId = `bench-${++taskSeq}`
    task = { taskId, sink }
    return { taskId }
  },
  async stopMetricsStreaming (agentId, taskId) {
    counts.stops++
    if (task?.taskId === taskId) task = null
  },
  async getCurrentMetrics () {
    return {}
  }
}

const options = {
  adapter,
  stopDelayMs: Number(process.env.BENCH_STOP_DELAY_MS ?? 2000),
  heartbeatIntervalMs: 15000,
  maxClients: 20000,
  maxClientsPerAgent: 20000
}
if (process.env.BENCH_MAX_BUFFERED_BYTES) options.maxBufferedBytes = Number(process.env.BENCH_MAX_BUFFERED_BYTES)
if (process.env.BENCH_FLUSH_INTERVAL_MS) options.flushIntervalMs = Number(process.env.BENCH_FLUSH_INTERVAL_MS)

const app = Fastify({ logger: false })
await app.register(agentSse, options)

app.post('/broadcast', async (request, reply) => {
  const params = parseBroadcast(request.url)
  if (params === null) return reply.code(400).send({ error: 'bad events/size' })
  if (task === null) return reply.code(409).send({ error: 'no running agent stream (no SSE client?)' })
  // The running task's sink at each push: in the reconnect storm the last client may leave and the stream restart.
  await trigger(params, (sample) => { task?.sink.push(sample) })
  return { events: params.events, clients: app.streamLifecycle.status(AGENT).subscribers }
})

app.get('/clock', async () => clock())
app.get('/stats', async (request) => {
  const status = app.streamLifecycle.status(AGENT)
  return stats(request.url, status.subscribers, { starts: counts.starts, stops: counts.stops, state: status.state })
})

await app.listen({ port: 0, host: '127.0.0.1' })
const { adapter: _adapter, ...config } = options
announce(app.server.address().port, { name: 'agent-sse', path: PATH, config })
