import type { Cluster, Redis } from 'ioredis'

/** What the coordinator talks to: a single Redis (or a Sentinel-managed primary) or a Redis Cluster. */
export type RedisClient = Redis | Cluster

export function isCluster (redis: RedisClient): redis is Cluster {
  return (redis as Cluster).isCluster === true
}

export function untilReady (connection: RedisClient): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve()
  return new Promise<void>((resolve) => connection.once('ready', () => resolve()))
}
