// The example server: `npm start`, open the printed URL, and watch agents start and stop
// collecting as dashboards come and go.
import { createReadStream } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import Fastify from 'fastify'
import agentSse from 'fastify-agent-sse'
import { createExampleAgents } from './agents/index.js'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const stopDelayMs = Number(process.env.STOP_DELAY_MS ?? 2000)

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
const { adapter, agentIds } = createExampleAgents({ log: app.log })

await app.register(agentSse, { adapter, prefix: '/api', stopDelayMs, defaultIntervalSeconds: 1 })

// The dashboard: static files, the package's browser client, and uPlot, all as ES modules.
await app.register(fastifyStatic, { root: join(here, 'dashboard') })
const modules = {
  '/client.js': join(here, '..', 'dist', 'esm', 'client', 'index.js'),
  '/vendor/uPlot.esm.js': require.resolve('uplot/dist/uPlot.esm.js'),
  '/vendor/uPlot.min.css': require.resolve('uplot/dist/uPlot.min.css')
}
for (const [path, file] of Object.entries(modules)) {
  app.get(path, (_request, reply) => reply.type(path.endsWith('.css') ? 'text/css' : 'text/javascript').send(createReadStream(file)))
}
app.get('/example/agents', async () => ({ agents: agentIds, stop_delay_ms: stopDelayMs }))

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}

const address = await app.listen({ port, host })
console.log(`
fastify-agent-sse example: open ${address}/ for the dashboard (agent "local" is this machine)
  API under ${address}/api, for example:
    curl -N ${address}/api/agents/edge-1/metrics/stream?interval_seconds=1
    curl ${address}/api/streams
Close the dashboard tab and, ${stopDelayMs / 1000} s later, the agent logs "collecting stopped".
`)
