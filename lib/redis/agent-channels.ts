import type { LifecycleLogger } from '../lifecycle/types.js'
import type { ClusterKeys } from './keys.js'
import { isCluster, type RedisClient } from './redis-client.js'

/**
 * The agent channels this instance listens to: exactly the agents it has subscribers or a hold of. An agent's
 * samples reach only the instances that watch it, and an instance hears nothing of the others. On a Redis
 * Cluster they are sharded channels (`SSUBSCRIBE`), on the node of the agent's slot.
 */
export class AgentChannels {
  /** The agents whose channel this instance subscribed to, each with its subscription (to tell one from the next). */
  private readonly subscribed = new Map<string, object>()
  /** The agents whose subscription Redis confirmed: what is published from now on arrives. */
  private readonly listening = new Set<string>()
  private readonly prefix: string

  constructor (
    private readonly connection: RedisClient,
    private readonly keys: ClusterKeys,
    private readonly logger: LifecycleLogger,
    /** The subscription to the agent's channel is live: what was published before it did not arrive. */
    private readonly live: (agentId: string) => void = () => {}
  ) {
    this.prefix = keys.channelPrefix
  }

  /** Listens to the agent's channel while `wanted`. */
  want (agentId: string, wanted: boolean): void {
    if (wanted === this.subscribed.has(agentId)) return
    const channel = this.keys.channel(agentId)
    const sharded = isCluster(this.connection)
    if (wanted) {
      const subscription = {}
      this.subscribed.set(agentId, subscription)
      const subscribed = sharded ? this.connection.ssubscribe(channel) : this.connection.subscribe(channel)
      subscribed.then(() => {
        if (this.subscribed.get(agentId) !== subscription) return
        this.listening.add(agentId)
        this.live(agentId)
      }, (err: Error) => this.logger.warn({ agentId, err }, `Could not subscribe to the channel of agent ${agentId}: ${err.message}`))
    } else {
      this.subscribed.delete(agentId)
      this.listening.delete(agentId)
      const unsubscribed = sharded ? this.connection.sunsubscribe(channel) : this.connection.unsubscribe(channel)
      unsubscribed.catch(() => {})
    }
  }

  /** The agent a channel is for, or null if it is not one this instance listens to (any more). */
  agentOf (channel: string): string | null {
    if (!channel.startsWith(this.prefix) || !channel.endsWith('}:s')) return null
    const agentId = channel.slice(this.prefix.length, -'}:s'.length)
    return this.subscribed.has(agentId) ? agentId : null
  }

  /** The agents whose channels this instance listens to (or is subscribing to). */
  agents (): string[] {
    return [...this.subscribed.keys()]
  }

  /** Whether Redis confirmed the subscription to the agent's channel (a sample published now arrives). */
  listens (agentId: string): boolean {
    return this.listening.has(agentId)
  }
}
