import type { LifecycleLogger } from '../lifecycle/types.js'
import type { ClusterKeys } from './keys.js'
import { isCluster, type RedisClient } from './redis-client.js'

/**
 * The agent channels this instance listens to: exactly the agents it has subscribers or a hold of. An agent's
 * samples reach only the instances that watch it, and an instance hears nothing of the others. On a Redis
 * Cluster they are sharded channels (`SSUBSCRIBE`), on the node of the agent's slot.
 */
export class AgentChannels {
  private readonly subscribed = new Set<string>()
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
      this.subscribed.add(agentId)
      const subscribed = sharded ? this.connection.ssubscribe(channel) : this.connection.subscribe(channel)
      subscribed.then(() => {
        if (this.subscribed.has(agentId)) this.live(agentId)
      }, (err: Error) => this.logger.warn({ agentId, err }, `Could not subscribe to the channel of agent ${agentId}: ${err.message}`))
    } else {
      this.subscribed.delete(agentId)
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

  /** The agents whose channels this instance listens to. */
  agents (): string[] {
    return [...this.subscribed]
  }
}
