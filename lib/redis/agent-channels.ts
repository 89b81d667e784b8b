import type { Redis } from 'ioredis'
import type { LifecycleLogger } from '../lifecycle/types.js'
import type { ClusterKeys } from './keys.js'

/**
 * The agent channels this instance listens to: exactly the agents it has subscribers or a hold of. An agent's
 * samples reach only the instances that watch it, and an instance hears nothing of the others.
 */
export class AgentChannels {
  private readonly subscribed = new Set<string>()
  private readonly prefix: string

  constructor (private readonly connection: Redis, private readonly keys: ClusterKeys, private readonly logger: LifecycleLogger) {
    this.prefix = keys.channelPrefix
  }

  /**
   * Listens to the agent's channel while `wanted`. Returns a promise when this starts a subscription: it
   * settles once the channel is live (or could not be), so that what the caller reads after it cannot miss
   * a message published in between (subscribe, then read). Null when nothing new was subscribed.
   */
  want (agentId: string, wanted: boolean): Promise<void> | null {
    if (wanted === this.subscribed.has(agentId)) return null
    const channel = this.keys.channel(agentId)
    if (wanted) {
      this.subscribed.add(agentId)
      return this.connection.subscribe(channel).then(
        () => {},
        (err: Error) => this.logger.warn({ agentId, err }, `Could not subscribe to the channel of agent ${agentId}: ${err.message}`)
      )
    }
    this.subscribed.delete(agentId)
    this.connection.unsubscribe(channel).catch(() => {})
    return null
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
