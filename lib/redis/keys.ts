/**
 * Where the cluster keeps things in Redis. Every key of one agent carries the agent id as a hash tag
 * (`{agentId}`), so that on a Redis Cluster they share a slot and one script may touch them together;
 * nothing ever touches two agents' keys in one command (but the renewal, on one node). The few keys that are
 * not an agent's (the event id counter of a single Redis, the index of streaming agents) are each one key.
 */
export class ClusterKeys {
  constructor (private readonly prefix: string) {}

  /** The agent's lease: the id of the instance that owns its stream, expiring after leaseMs. */
  owner (agentId: string): string {
    return `${this.prefix}{${agentId}}:owner`
  }

  /** The owner's live task, so that a successor can stop it. */
  task (agentId: string): string {
    return `${this.prefix}{${agentId}}:task`
  }

  /** Tasks a successor took over (and stopped): their first owner must not stop them again. */
  stopped (agentId: string): string {
    return `${this.prefix}{${agentId}}:stopped`
  }

  /** Hash: per instance (field `i:<instanceId>`) its demand with a deadline; field `v` counts changes. */
  demand (agentId: string): string {
    return `${this.prefix}{${agentId}}:demand`
  }

  /** How the owner's last stream ended for the cluster (its end or failure message as published). */
  ending (agentId: string): string {
    return `${this.prefix}{${agentId}}:ending`
  }

  /** The agent's latest sample as published, kept for the stream's interval. */
  latest (agentId: string): string {
    return `${this.prefix}{${agentId}}:latest`
  }

  /** The owner's description of the stream (state, task, interval, start). */
  info (agentId: string): string {
    return `${this.prefix}{${agentId}}:info`
  }

  /** Samples, ends, failures, stream changes and hold releases: to the instances that watch the agent. */
  channel (agentId: string): string {
    return `${this.prefix}{${agentId}}:s`
  }

  /** The prefix of every agent channel, and of nothing else the coordinator subscribes to. */
  get channelPrefix (): string {
    return `${this.prefix}{`
  }

  /** Point to point: demand changes for the owner, cancels and their answers. */
  inbox (instanceId: string): string {
    return `${this.prefix}inbox:${instanceId}`
  }

  /** Sorted set of the agents being streamed, scored by their lease's deadline (for GET /streams). */
  get streams (): string {
    return `${this.prefix}streams`
  }

  /** The event id counter (INCR) on a single Redis: one sequence for every agent. */
  get eventId (): string {
    return `${this.prefix}event-id`
  }

  /** The agent's own event id counter on a Redis Cluster (its slot), expiring while the agent does not publish. */
  eventIdOf (agentId: string): string {
    return `${this.prefix}{${agentId}}:event-id`
  }
}
