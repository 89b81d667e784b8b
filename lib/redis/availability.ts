import { FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE } from '../errors.js'
import { withTimeout } from '../lifecycle/adapter-call.js'
import type { LifecycleLogger, LifecycleTimers } from '../lifecycle/types.js'
import { isCluster, untilReady, type RedisClient } from './redis-client.js'

/** The error of a Redis call that did not answer in time. */
export const noAnswer = (ms: number) => (): Error => new Error(`no answer within ${ms} ms`)

/** What the connections tell the rest of the instance. */
export interface AvailabilityHooks {
  /** A message on the instance's inbox or on an agent channel. */
  message (channel: string, text: string): void
  /** A connection is ready (again): renew now rather than at the next period. */
  reconnected (): void
  /** Redis is reachable again (after `lost`, or for the first time). */
  restored (): void
  /** Redis is no longer reachable: whatever waits on it here is told `err`. */
  lost (err: Error): void
  closing (): boolean
}

/**
 * Whether this instance can serve: its two connections to Redis (the caller's, for commands, and its own
 * subscriber connection, for the inbox and the agent channels) and the last renewal's answer.
 */
export class Availability {
  private available = false
  private unavailableReason = 'not connected yet'
  private subscriber: RedisClient | null = null
  private readonly detach: Array<() => void> = []

  constructor (
    private readonly redis: RedisClient,
    private readonly instanceId: string,
    private readonly logger: LifecycleLogger,
    private readonly hooks: AvailabilityHooks
  ) {}

  get isAvailable (): boolean {
    return this.available
  }

  /** Throws (503) while Redis is not reachable. */
  assertAvailable (): void {
    if (!this.available) throw new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(this.unavailableReason)
  }

  /** Both connections are ready for a renewal. */
  get connected (): boolean {
    return this.redis.status === 'ready' && this.subscriber?.status === 'ready'
  }

  /** Connects both, listens on `inbox`, and resolves with the subscriber connection (for the agent channels). */
  async connect (inbox: string): Promise<RedisClient> {
    const redis = this.redis
    if (redis.status === 'wait') await redis.connect()
    await untilReady(redis)
    // On a Redis Cluster the agent channels are sharded: one subscriber connection per primary, each agent's
    // messages on its slot's shard only. The inbox is a plain channel (a demand change names it from any slot).
    const subscriber = isCluster(redis) ? redis.duplicate([], { shardedSubscribers: true }) : redis.duplicate()
    this.subscriber = subscriber
    if (subscriber.status === 'wait') await subscriber.connect()
    // Without a listener ioredis reports every failed reconnect as an unhandled error.
    subscriber.on('error', () => {})
    subscriber.on('message', (channel: string, text: string) => this.hooks.message(channel, text))
    subscriber.on('smessage', (channel: string, text: string) => this.hooks.message(channel, text))
    await untilReady(subscriber)
    await subscriber.subscribe(inbox)
    for (const connection of [redis, subscriber]) {
      const down = (): void => this.down(connection === redis ? 'the Redis connection closed' : 'the Redis subscriber connection closed')
      const up = (): void => this.hooks.reconnected()
      connection.on('close', down)
      connection.on('ready', up)
      this.detach.push(() => { connection.off('close', down); connection.off('ready', up) })
    }
    return subscriber
  }

  /** A renewal was answered. */
  up (): void {
    if (this.available) return
    this.available = true
    this.hooks.restored()
    this.logger.info({ instanceId: this.instanceId }, `Cluster coordinator available on instance ${this.instanceId}`)
  }

  down (reason: string): void {
    if (this.hooks.closing()) return
    this.unavailableReason = reason
    if (!this.available) return
    this.available = false
    const err = new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(reason)
    this.logger.error({ instanceId: this.instanceId, err }, `Cluster coordinator unavailable on instance ${this.instanceId}: ${reason}; closing its SSE clients`)
    this.hooks.lost(err)
  }

  /** Closing: stops listening to the caller's connection (it is theirs) and quits the subscriber connection. */
  async disconnect (timeoutMs: number, timers: LifecycleTimers): Promise<void> {
    for (const undo of this.detach) undo()
    const subscriber = this.subscriber
    if (subscriber) await withTimeout(subscriber.quit(), timeoutMs, timers, noAnswer(timeoutMs)).catch(() => subscriber.disconnect())
  }
}
