// The example server: `npm start`, then open an SSE stream and watch the agent start and stop.
import Fastify from 'fastify'
import agentSse from 'fastify-agent-sse'
import { createSimulatedAgents } from './simulated-agents.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'

const app = Fastify({ logger: { level: 'info' } })
const adapter = createSimulatedAgents({ agentIds: ['edge-1', 'edge-2', 'edge-3'], log: app.log })

await app.register(agentSse, { adapter, prefix: '/api', stopDelayMs: 2000, defaultIntervalSeconds: 1 })

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}

const address = await app.listen({ port, host })
const base = `${address}/api`
console.log(`
fastify-agent-sse example listening on ${base}
  watch an agent:   curl -N ${base}/agents/edge-1/metrics/stream?interval_seconds=1
  its status:       curl ${base}/agents/edge-1/status
  live streams:     curl ${base}/streams
Stop the curl and, after the 2 s grace window, the agent logs "collecting stopped".
`)
