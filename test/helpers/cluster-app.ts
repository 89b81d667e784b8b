import { Redis } from 'ioredis'
import type { Test } from 'tap'
import { redisCoordinator } from '../../lib/redis/index.js'
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

export interface ClusterAppOptions {
  redisUrl: string
  instanceId: string
  leaseMs?: number
  stopDelayMs?: number
  keyPrefix?: string
  adapterTimeoutMs?: number
}

/**
 * One cluster instance in this process (so that lib/ is measured by coverage): a Fastify app on
 * 127.0.0.1 with its own ioredis connections to the real redis-server and its own TestAdapter,
 * whose task ids carry the instance id. Closed in teardown (app first, then its Redis client).
 */
export async function startClusterApp (t: Test, options: ClusterAppOptions) {
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1, retryStrategy: () => 50, lazyConnect: true })
  redis.on('error', () => {})
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
