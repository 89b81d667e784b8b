import { Cluster, Redis } from 'ioredis'
import type { Test } from 'tap'
import { redisCoordinator } from '../../lib/redis/index.js'
import { redisClusterSkip, startRedisCluster, type RedisCluster } from './redis-cluster.js'
import { redisSkip, startRedis, type RedisServer } from './redis-server.js'
import { startServer } from './server.js'
import { TestAdapter } from './test-adapter.js'

/**
 * The lease of the test clusters. Renewals go every leaseMs/3 and a lease runs out when none lands
 * for leaseMs, so 3000 ms rides out a stall of well over a second: of this process (which runs
 * every in-process instance, so it stalls them all at once), or of an instance process starting up
 * on a busy 2-core machine. A test that wants a handover makes one: SIGKILL, SIGSTOP, Redis down,
 * a taken lease, a close.
 */
export const CLUSTER_TEST_LEASE_MS = 3000

/** What the cluster suites run against: one redis-server, or a three-master Redis Cluster. */
export type RedisTargetKind = 'standalone' | 'cluster'

/**
 * `AGENT_SSE_REDIS_TARGET=cluster` runs the cluster suites (cluster.test.ts, cluster-processes.test.ts,
 * cluster.property.test.ts) against a Redis Cluster; their `*.redis-cluster.test.ts` wrappers set it.
 * Read when called, not at import: a wrapper sets it before it imports the suite.
 */
export function redisTargetKind (): RedisTargetKind {
  const value = process.env.AGENT_SSE_REDIS_TARGET
  if (value === undefined || value === '' || value === 'standalone') return 'standalone'
  if (value === 'cluster') return 'cluster'
  throw new Error(`AGENT_SSE_REDIS_TARGET must be "standalone" or "cluster" (got ${JSON.stringify(value)})`)
}

/** `redisSkip()` or `redisClusterSkip()`, for the target the suites run against. */
export function redisTargetSkip (kind: RedisTargetKind = redisTargetKind()): string | false {
  return kind === 'cluster' ? redisClusterSkip() : redisSkip()
}

/** ` (Redis Cluster)` on the cluster target, so that both runs' test names say where they ran. */
export function targetSuffix (kind: RedisTargetKind = redisTargetKind()): string {
  return kind === 'cluster' ? ' (Redis Cluster)' : ''
}

/** A real redis-server or Redis Cluster, as the cluster tests see it (both are killed in teardown). */
export interface RedisTarget {
  kind: RedisTargetKind
  /** What an instance process (test/fixtures/cluster-instance.js) needs to reach it: REDIS_URL or REDIS_CLUSTER_NODES. */
  env: Record<string, string>
  /**
   * A client as the instances make one (lazy, maxRetriesPerRequest 1, a reconnect every 50 ms, an 'error'
   * listener): `Redis` or `Cluster`. The caller disconnects it. A `Redis` fails a command at once while the
   * server is down; a `Cluster` keeps it in its offline queue until the cluster is back.
   */
  connect (): Redis | Cluster
  /** KEYS on every master. */
  keys (pattern: string): Promise<string[]>
  /** SIGKILL of the server, or of every cluster node: nothing is kept. */
  stop (): Promise<void>
  /** Starts it again on the same ports (a cluster with its slots); resolves once it serves. */
  start (): Promise<void>
  restart (): Promise<void>
  /** The redis-server (standalone) or the Redis Cluster underneath, for what only one of them has. */
  server?: RedisServer
  cluster?: RedisCluster
}

/** A client of one redis-server as the instances make one; the caller disconnects it. */
function standaloneClient (url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 50, lazyConnect: true })
  client.on('error', () => {})
  return client
}

export function standaloneTarget (server: RedisServer): RedisTarget {
  const connect = () => standaloneClient(server.url)
  return {
    kind: 'standalone',
    env: { REDIS_URL: server.url },
    connect,
    async keys (pattern) {
      const client = connect()
      try { return await client.keys(pattern) } finally { client.disconnect() }
    },
    stop: () => server.stop(),
    start: () => server.start(),
    restart: () => server.restart(),
    server
  }
}

export function clusterTarget (cluster: RedisCluster): RedisTarget {
  return {
    kind: 'cluster',
    env: { REDIS_CLUSTER_NODES: cluster.seeds },
    connect: () => cluster.client(),
    async keys (pattern) {
      const perNode = await Promise.all(cluster.nodes.map((node) => cluster.node(node).keys(pattern)))
      return perNode.flat()
    },
    stop: () => cluster.stop(),
    start: () => cluster.start(),
    restart: () => cluster.restart(),
    cluster
  }
}

/**
 * A message on a channel as the coordinator sends it: PUBLISH on one redis-server; through a Cluster client
 * SPUBLISH (to the shard of the channel's slot) for an agent channel (`<prefix>{<agentId>}:s`), else PUBLISH.
 */
export async function publishAs (client: Redis | Cluster, channel: string, message: string): Promise<void> {
  if (client instanceof Cluster && /\{[^}]+\}:s$/.test(channel)) await client.spublish(channel, message)
  else await client.publish(channel, message)
}

/** A throwaway redis-server or 3-master Redis Cluster (AGENT_SSE_REDIS_TARGET by default), killed in teardown. */
export async function startRedisTarget (t: Test, kind: RedisTargetKind = redisTargetKind()): Promise<RedisTarget> {
  return kind === 'cluster' ? clusterTarget(await startRedisCluster(t)) : standaloneTarget(await startRedis(t))
}

export interface ClusterAppOptions {
  /** The Redis to coordinate through; or `redisUrl` for a standalone redis-server. */
  redis?: RedisTarget
  redisUrl?: string
  instanceId: string
  leaseMs?: number
  stopDelayMs?: number
  keyPrefix?: string
  adapterTimeoutMs?: number
}

/**
 * One cluster instance in this process (so that lib/ is measured by coverage): a Fastify app on
 * 127.0.0.1 with its own ioredis connections to the real redis-server (or Redis Cluster) and its own
 * TestAdapter, whose task ids carry the instance id. Closed in teardown (app first, then its Redis client).
 */
export async function startClusterApp (t: Test, options: ClusterAppOptions) {
  if (options.redis === undefined && options.redisUrl === undefined) throw new Error('startClusterApp needs redis or redisUrl')
  const redis = options.redis?.connect() ?? standaloneClient(options.redisUrl!)
  t.teardown(() => { redis.disconnect() })
  const adapter = new TestAdapter({ taskPrefix: `${options.instanceId}:` })
  const server = await startServer(t, {
    adapter,
    stopDelayMs: options.stopDelayMs ?? 200,
    adapterTimeoutMs: options.adapterTimeoutMs ?? 2000,
    defaultIntervalSeconds: 1,
    coordinator: redisCoordinator({ redis, keyPrefix: options.keyPrefix ?? 'inproc:', leaseMs: options.leaseMs ?? CLUSTER_TEST_LEASE_MS, instanceId: options.instanceId })
  })
  return { ...server, id: options.instanceId, redis }
}

export type ClusterApp = Awaited<ReturnType<typeof startClusterApp>>

/** Tasks started and not stopped, over every instance's adapter. */
export function liveTasks (apps: ClusterApp[], agentId?: string): string[] {
  const live: string[] = []
  for (const app of apps) {
    for (const [taskId, agent] of app.adapter.liveTasks) if (agentId === undefined || agent === agentId) live.push(taskId)
  }
  return live
}

export const starts = (apps: ClusterApp[], agentId: string): number => apps.reduce((sum, app) => sum + app.adapter.startsFor(agentId), 0)
export const stops = (apps: ClusterApp[], agentId: string): number => apps.reduce((sum, app) => sum + app.adapter.stopsFor(agentId), 0)
