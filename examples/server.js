// The example server: `npm start`, open the printed URL, and watch agents start and stop
// collecting as dashboards come and go.
import Fastify from 'fastify'
import agentSse from 'fastify-agent-sse'
import { createExampleAgents } from './agents/index.js'
import { serveDashboard } from './dashboard.js'
import { agentSseMetrics } from './prometheus.js'
import { readableLogStream } from './readable-log.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const stopDelayMs = Number(process.env.STOP_DELAY_MS ?? 2000)

// Readable lines in the terminal, and none per request: LOG_FORMAT=json for pino's own JSON lines.
const stream = process.env.LOG_FORMAT === 'json' ? process.stdout : readableLogStream()
const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info', stream } })
const { adapter, agentIds, labels } = createExampleAgents({ log: app.log })

// Subscribed before anything connects, so that its gauges start from zero with the server.
const metrics = agentSseMetrics()
app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()))

await app.register(agentSse, { adapter, prefix: '/api', stopDelayMs, defaultIntervalSeconds: 1 })

await serveDashboard(app, { agents: agentIds, labels, stop_delay_ms: stopDelayMs })

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}

const address = await app.listen({ port, host })
const edges = agentIds.filter((id) => id !== 'local')
console.log(`
fastify-agent-sse example: open ${address}/ for the dashboard: ${agentIds.length} agents on one stream
  ("local" is this machine, ${edges[0]} … ${edges.at(-1)} are simulated); click an agent to watch it alone:
    ${address}/agent.html?agent=local
  API under ${address}/api, for example:
    curl -N ${address}/api/agents/edge-1/metrics/stream?interval_seconds=1
    curl -N '${address}/api/metrics/stream?agents=edge-1,edge-2&interval_seconds=1'
    curl ${address}/api/streams
    curl ${address}/metrics                  (Prometheus text: clients, streams, adapter latency…)
Close the dashboard tab and, ${stopDelayMs / 1000} s later, each agent logs "collecting stopped".
`)
