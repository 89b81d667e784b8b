// One member of the example cluster: the example server (simulated agents, live dashboard)
// with the Redis coordinator. Every instance started on the same Redis and KEY_PREFIX shares
// one agent stream per agent; start.js runs two of them.
//
//   REDIS_URL=redis://127.0.0.1:6379 INSTANCE_ID=a PORT=3001 node examples/cluster/instance.js
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import agentSse from 'fastify-agent-sse'
import { redisCoordinator } from 'fastify-agent-sse/redis'
import { createExampleAgents } from '../agents/index.js'
import { serveDashboard } from '../dashboard.js'

const env = process.env
const port = Number(env.PORT ?? 3001)
const host = env.HOST ?? '127.0.0.1'
const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379'
// Unique among running instances (the plugin's default is a random one too).
const instanceId = env.INSTANCE_ID ?? randomUUID()
const stopDelayMs = Number(env.STOP_DELAY_MS ?? 2000)
// Shorter than the plugin's default (10000) so that a failover is quick to watch.
const leaseMs = Number(env.LEASE_MS ?? 3000)
// Its own prefix, so the example cannot touch a real deployment's keys on a shared Redis.
const keyPrefix = env.KEY_PREFIX ?? 'agent-sse-example:'

const app = Fastify({ logger: { level: env.LOG_LEVEL ?? 'info' } })
const { adapter, agentIds } = createExampleAgents({ log: app.log })

// The client is yours: the coordinator makes its own subscriber connection from it and never closes it.
const redis = new Redis(redisUrl)
// Without a listener ioredis prints every failed reconnect; one line per outage is enough.
let redisDown = false
redis.on('error', (err) => {
  if (!redisDown) app.log.warn(`Redis connection error: ${err.message}`)
  redisDown = true
})
redis.on('ready', () => { redisDown = false })

await app.register(agentSse, {
  adapter: labelSamples(adapter, instanceId),
  prefix: '/api',
  stopDelayMs,
  defaultIntervalSeconds: 1,
  // register resolves once the coordinator has joined the cluster (it waits while Redis is down).
  coordinator: redisCoordinator({ redis, keyPrefix, leaseMs, instanceId })
})

await serveDashboard(app, { agents: agentIds, stop_delay_ms: stopDelayMs, instance_id: instanceId })

/**
 * Adds `collected_by` (this instance) and `task_id` to every sample, so that a dashboard on
 * any instance shows which instance's task produced it: the same one everywhere.
 */
function labelSamples (agents, collectedBy) {
  return {
    ...agents,
    async startMetricsStreaming (agentId, options, sink) {
      let taskId = null
      const labelled = {
        push: (sample) => sink.push({ ...sample, collected_by: collectedBy, task_id: taskId }),
        end: (reason) => sink.end(reason),
        error: (err) => sink.error(err)
      }
      ;({ taskId } = await agents.startMetricsStreaming(agentId, options, labelled))
      return { taskId }
    }
  }
}

async function shutdown () {
  let code = 0
  try {
    // First the plugin: it stops what this instance streams and releases its leases through `redis`.
    await app.close()
  } catch (err) {
    app.log.error({ err }, 'close failed')
    code = 1
  }
  // quit() waits for Redis, which may be gone by now: give it a moment, then drop the socket.
  await Promise.race([redis.quit().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))])
  redis.disconnect()
  process.exit(code)
}
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, shutdown)

const address = await app.listen({ port, host })
const { protocol, host: redisHost } = new URL(redisUrl) // printed without credentials
console.log(`fastify-agent-sse cluster instance ${instanceId}: open ${address}/ for the dashboard (Redis ${protocol}//${redisHost}, lease ${leaseMs} ms)`)
