import { randomUUID } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { FST_ERR_AGENT_SSE_INVALID_OPTION } from '../errors.js'
import type { Coordinator } from '../lifecycle/coordinator.js'
import { assertKnownOptions, coordinatorOptionRules, resolveScalarOptions } from '../option-rules.js'
import { ClusterStreams } from './cluster-streams.js'

/** Options of {@link redisCoordinator}. */
export interface RedisCoordinatorOptions {
  /**
   * A connected (or connecting) ioredis client for commands: `new Redis(url)` for a single Redis (or a
   * Sentinel-managed primary), `new Cluster(nodes)` for a Redis Cluster (Redis >= 7: sharded pub/sub).
   * The coordinator makes its own subscriber connection from it (`redis.duplicate()`) and never closes
   * this one: it is yours.
   */
  redis: Redis | Cluster
  /**
   * Prefix of every key and channel, so that several clusters (or apps) can share one Redis.
   * @default 'agent-sse:'
   */
  keyPrefix?: string
  /**
   * How long an instance's leases last without renewal; they are renewed every leaseMs/3.
   * Bounds failover (a dead owner's agents move within leaseMs plus one renewal) and how long
   * an owner cut off from Redis keeps streaming. An integer >= 100.
   * @default 10000
   */
  leaseMs?: number
  /**
   * This instance's name in the cluster (logs, status `owner`). Must be unique among live instances.
   * @default a random UUID
   */
  instanceId?: string
}

const knownCoordinatorOptions = ['redis', ...Object.keys(coordinatorOptionRules)]

/**
 * Cluster mode: every instance registered with a `redisCoordinator` on the same Redis (and
 * `keyPrefix`) shares one reference count and one agent stream per agent.
 *
 * ```ts
 * await app.register(agentSse, { adapter, coordinator: redisCoordinator({ redis: new Redis(url) }) })
 * ```
 */
export function redisCoordinator (options: RedisCoordinatorOptions): Coordinator {
  const redis = options?.redis
  if (typeof redis?.duplicate !== 'function' || typeof redis.evalsha !== 'function' || typeof redis.status !== 'string') {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('coordinator.redis', 'must be an ioredis client (new Redis(url) or new Cluster(nodes))')
  }
  const given = options as unknown as Record<string, unknown>
  assertKnownOptions(given, knownCoordinatorOptions, 'redisCoordinator()', 'coordinator.')
  const resolved = resolveScalarOptions(given, coordinatorOptionRules, 'coordinator.')
  const { keyPrefix, leaseMs } = resolved
  const instanceId = resolved.instanceId ?? randomUUID()
  let attached = false
  return {
    attach (context) {
      // One coordinator is one cluster member: two lifecycles sharing it would share its leases.
      if (attached) throw new FST_ERR_AGENT_SSE_INVALID_OPTION('coordinator', 'is already attached to a lifecycle: create one redisCoordinator() per plugin registration')
      attached = true
      return new ClusterStreams(context, { redis, keyPrefix, leaseMs, instanceId })
    }
  }
}
