// One cluster instance in a process of its own, for bench/cluster.js's failover measurement (which
// SIGKILLs it): a StreamLifecycle with a redisCoordinator and the bench adapter, with one subscriber of
// each of its agents (`<AGENT_PREFIX>0` … `<AGENT_PREFIX><AGENTS - 1>`), so that it owns them.
// Environment: REDIS_SEEDS (host:port,…), REDIS_CLUSTER=1 for a Redis Cluster, LEASE_MS, INSTANCE_ID,
// AGENTS, AGENT_PREFIX, BENCH_AGENT_SSE_DIR (as bench/cluster.js). Over IPC it sends `{ ready: true }`
// once it streams and owns all its agents; on `{ push: true }` it pushes one sample of each; on
// `{ report: true }` it says how far it got.
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { Cluster, Redis } from 'ioredis'
import { benchAdapter } from './cluster-adapter.js'

const env = process.env
const base = env.BENCH_AGENT_SSE_DIR
const { StreamLifecycle } = await import(base ? pathToFileURL(path.join(base, 'dist/esm/index.js')).href : 'fastify-agent-sse')
const { redisCoordinator } = await import(base ? pathToFileURL(path.join(base, 'dist/esm/redis/index.js')).href : 'fastify-agent-sse/redis')

const nodes = env.REDIS_SEEDS.split(',').map((seed) => {
  const [host, port] = seed.split(':')
  return { host, port: Number(port) }
})
const redis = env.REDIS_CLUSTER === '1' ? new Cluster(nodes) : new Redis(nodes[0].port, nodes[0].host)
redis.on('error', () => {})
const instanceId = env.INSTANCE_ID
const agentIds = Array.from({ length: Number(env.AGENTS) }, (_, index) => `${env.AGENT_PREFIX}${index}`)
const adapter = benchAdapter(instanceId)
const lifecycle = new StreamLifecycle({ adapter, stopDelayMs: 1000, coordinator: redisCoordinator({ redis, keyPrefix: 'bench:', leaseMs: Number(env.LEASE_MS), instanceId }) })
await lifecycle.ready()
for (const agentId of agentIds) lifecycle.subscribe(agentId, { intervalSeconds: 1, onSample () {} })

process.on('disconnect', () => process.exit(0)) // the bench is gone
process.on('message', (message) => {
  if (message.push) for (const task of adapter.tasks.values()) task.push({ instance: instanceId })
  if (message.report) {
    const owned = agentIds.filter((agentId) => lifecycle.status(agentId).owner === instanceId).length
    process.send({ report: `${adapter.tasks.size} of ${agentIds.length} agents streaming here, ${owned} owned here, Redis ${redis.status}` })
  }
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
while (!agentIds.every((agentId) => adapter.tasks.has(agentId) && lifecycle.status(agentId).owner === instanceId)) await sleep(20)
process.send({ ready: true })
