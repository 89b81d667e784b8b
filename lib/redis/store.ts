import { createHash } from 'node:crypto'
import calculateSlot from 'cluster-key-slot'
import { parseAgentRead, type AgentRead } from './agent-views.js'
import type { ClusterKeys } from './keys.js'
import { RedisClock } from './redis-clock.js'
import { isCluster, type RedisClient } from './redis-client.js'
import { parseTaskRecord, taskRecord, type InstanceDemand } from './records.js'
import { agentScripts, CLAIM_STOP, READ_AGENT, RENEW, RENEW_ON_NODE, TAKE_PREVIOUS_TASK, type AgentScripts } from './scripts.js'

/** What this instance renews for one agent. */
export interface Renewal {
  agentId: string
  /** 'o' it owns the agent, 'w' it has (or just had) demand, 'q' it only reads it. */
  mode: 'o' | 'w' | 'q'
  /** Its demand record, '' for none. */
  demand: string
}

/** One agent in a renewal's answer. */
export interface Renewed {
  /** 0: another instance holds the lease; 1 kept; 2 re-taken (Redis lost it); 3 taken (it was free). */
  outcome: number
  read: AgentRead
}

/** The answer to a demand change. */
export interface DemandChanged {
  /** The lease was free and is now this instance's. */
  acquired: boolean
  read: AgentRead
}

/**
 * Every Redis command the coordinator sends. On a Redis Cluster (an ioredis `Cluster`) the agent channels are
 * sharded (`SPUBLISH`), each agent counts its own event ids, and a renewal is one script call per node.
 */
export class RedisStore {
  private readonly shas = new Map<string, string>()
  private readonly clock = new RedisClock()
  readonly sharded: boolean
  private readonly scripts: AgentScripts

  constructor (
    private readonly redis: RedisClient,
    readonly keys: ClusterKeys,
    readonly instanceId: string,
    private readonly leaseMs: number,
    /** Told about a record read from Redis that does not pass validation (then left out). */
    private readonly dropped: (what: string, agentId: string) => void
  ) {
    this.sharded = isCluster(redis)
    this.scripts = agentScripts(this.sharded)
  }

  /**
   * Renews every lease and demand record of this instance and reads back each agent's owner, description and
   * demand: one script call (on a Redis Cluster, one per node, all sent at once).
   */
  async renew (agents: Renewal[], ownedStreaming: string[]): Promise<Map<string, Renewed>> {
    const renewed = new Map<string, Renewed>()
    const calls = this.renewalGroups(agents).map(async (group) => {
      for (const [agentId, result] of await this.renewGroup(group)) renewed.set(agentId, result)
    })
    // The index of streamed agents (GET /streams): a key of its own, so its own command.
    const deadline = Date.now() + this.leaseMs
    if (ownedStreaming.length > 0) calls.push(this.redis.zadd(this.keys.streams, ...ownedStreaming.flatMap((agentId) => [deadline, agentId])).then(() => {}))
    if (calls.length === 0) calls.push(this.redis.ping().then(() => {}))
    await Promise.all(calls)
    return renewed
  }

  /** The agents of one renewal call: all of them, or on a Redis Cluster those of each node. */
  private renewalGroups (agents: Renewal[]): Renewal[][] {
    if (agents.length === 0) return []
    if (!isCluster(this.redis)) return [agents]
    const byNode = new Map<string, Renewal[]>()
    for (const renewal of agents) {
      const slot = calculateSlot(this.keys.owner(renewal.agentId))
      // A slot the client has no node for yet goes alone; Redis answers MOVED and the client learns.
      const node = this.redis.slots[slot]?.[0] ?? `slot ${slot}`
      const group = byNode.get(node)
      if (group) group.push(renewal)
      else byNode.set(node, [renewal])
    }
    return [...byNode.values()]
  }

  private async renewGroup (agents: Renewal[]): Promise<Map<string, Renewed>> {
    const keysOf = (agentId: string): string[] => [this.keys.owner(agentId), this.keys.task(agentId), this.keys.demand(agentId), this.keys.info(agentId)]
    const settings = [this.instanceId, this.leaseMs, this.recordTtlMs, this.idleTtlMs]
    const sentAt = this.clock.callStarted()
    let reply: unknown[]
    try {
      reply = await (this.sharded
        ? this.script(RENEW_ON_NODE, keysOf(agents[0]!.agentId), [...settings, ...agents.flatMap(({ agentId, mode, demand }) => [mode, demand, ...keysOf(agentId)])])
        : this.script(RENEW, agents.flatMap(({ agentId }) => keysOf(agentId)), [...settings, ...agents.flatMap(({ mode, demand }) => [mode, demand])])) as unknown[]
    } catch (err) {
      // Slots moved between nodes since the client's last look (resharding, failover): one call per agent
      // this time; the client has learned the new layout for the next renewal.
      if (!this.sharded || agents.length === 1 || !slotsMoved(err)) throw err
      const parts = await Promise.all(agents.map((agent) => this.renewGroup([agent])))
      return new Map(parts.flatMap((part) => [...part]))
    }
    const renewed = new Map<string, Renewed>()
    const at = this.redisClock(reply[0], sentAt)
    agents.forEach(({ agentId }, index) => {
      const [outcome, owner, info, fields] = reply[index + 1] as unknown[]
      renewed.set(agentId, { outcome: Number(outcome), read: parseAgentRead(at, owner, info, fields, (what) => this.dropped(what, agentId)) })
    })
    return renewed
  }

  /** Writes this instance's demand for the agent ('' for none), takes a free lease, tells the owner. */
  async changeDemand (agentId: string, demand: string): Promise<DemandChanged> {
    const keys = [this.keys.owner(agentId), this.keys.demand(agentId), this.keys.info(agentId)]
    const sentAt = this.clock.callStarted()
    const reply = await this.script(this.scripts.changeDemand, keys, [this.instanceId, demand, this.leaseMs, this.idleTtlMs, this.keys.channel(agentId)]) as unknown[]
    const [at, acquired, owner, info, fields] = reply
    return { acquired: Number(acquired) === 1, read: parseAgentRead(this.redisClock(at, sentAt), owner, info, fields, (what) => this.dropped(what, agentId)) }
  }

  /**
   * The agent's demand (the owner, told that it changed by an instance too old to say how), stamped with Redis's
   * clock at the read itself: a later stamp would let it hide the changes that came after it.
   */
  async readDemand (agentId: string): Promise<{ at: number, demands: Map<string, InstanceDemand> }> {
    const { at, demands } = await this.readAgent(agentId)
    return { at, demands }
  }

  async readAgent (agentId: string): Promise<AgentRead> {
    const keys = [this.keys.owner(agentId), this.keys.demand(agentId), this.keys.info(agentId)]
    const sentAt = this.clock.callStarted()
    const [at, owner, info, fields] = await this.script(READ_AGENT, keys, []) as unknown[]
    return parseAgentRead(this.redisClock(at, sentAt), owner, info, fields, (what) => this.dropped(what, agentId))
  }

  /** The agents some owner streams (their leases renewed lately; scores are the owners' deadlines). */
  async streamingAgents (): Promise<string[]> {
    const now = Date.now()
    const results = await this.redis.pipeline().zremrangebyscore(this.keys.streams, '-inf', now).zrangebyscore(this.keys.streams, now, '+inf').exec()
    const agents = results?.[1]?.[1]
    return Array.isArray(agents) ? agents.map(String) : []
  }

  /** Describes the stream (and records its live task, for a successor), fenced by the lease. */
  async publishInfo (agentId: string, info: string, taskId: string | null): Promise<boolean> {
    const keys = [this.keys.owner(agentId), this.keys.info(agentId), this.keys.task(agentId)]
    const record = taskId === null ? '' : taskRecord(this.instanceId, taskId)
    return Number(await this.redis.eval(this.scripts.publishInfo, keys.length, ...keys, this.instanceId, info, record, this.recordTtlMs, this.keys.channel(agentId), 'i\n')) === 1
  }

  /** Gives the lease up (if it is still ours) and tells the agent's watchers that the stream is idle. */
  async release (agentId: string, idleInfo: string): Promise<void> {
    const keys = [this.keys.owner(agentId), this.keys.task(agentId), this.keys.info(agentId)]
    await Promise.all([
      this.redis.eval(this.scripts.release, keys.length, ...keys, this.instanceId, this.keys.channel(agentId), 'i\n', idleInfo),
      this.redis.zrem(this.keys.streams, agentId)
    ])
  }

  /**
   * Takes the task a previous owner recorded for the agent and did not clear (it died or lost its lease):
   * the caller stops it, and the previous owner, should it come back, does not.
   */
  async takePreviousTask (agentId: string): Promise<{ owner: string, taskId: string } | null> {
    const text = await this.redis.eval(TAKE_PREVIOUS_TASK, 2, this.keys.task(agentId), this.keys.stopped(agentId), this.stoppedTtlMs)
    return parseTaskRecord(text)
  }

  /** Whether this instance is to stop its task: false if a successor took it over (and stops it). */
  async claimStop (agentId: string, taskId: string): Promise<boolean> {
    return Number(await this.redis.eval(CLAIM_STOP, 2, this.keys.task(agentId), this.keys.stopped(agentId), taskRecord(this.instanceId, taskId))) === 1
  }

  /** The assigned event id, or 0 if this instance no longer holds the agent's lease. */
  async publishSample (agentId: string, floor: number, payload: string): Promise<number> {
    const counter = this.sharded ? this.keys.eventIdOf(agentId) : this.keys.eventId
    const keys = [this.keys.owner(agentId), counter, this.keys.latest(agentId)]
    return Number(await this.script(this.scripts.publishSample, keys, [this.instanceId, floor, this.keys.channel(agentId), payload, this.idleTtlMs]))
  }

  /** The agent's latest sample message (as published on its channel), if it is younger than the stream's interval. */
  async latestSample (agentId: string): Promise<string | null> {
    return this.redis.get(this.keys.latest(agentId))
  }

  /** Publishes how the agent's stream ended (an end or a failure message) only while holding its lease. */
  async publishAsOwner (agentId: string, message: string): Promise<boolean> {
    // EVAL, not EVALSHA: a NOSCRIPT retry could land after a later release of the lease and be refused.
    const keys = [this.keys.owner(agentId), this.keys.ending(agentId)]
    return Number(await this.redis.eval(this.scripts.publishEnding, keys.length, ...keys, this.instanceId, this.keys.channel(agentId), message, this.recordTtlMs)) === 1
  }

  /** The end or failure the agent's owner last published (kept 3 × leaseMs), or null. */
  async lastEnding (agentId: string): Promise<string | null> {
    return this.redis.get(this.keys.ending(agentId))
  }

  async publishToAgent (agentId: string, message: string): Promise<void> {
    if (isCluster(this.redis)) await this.redis.spublish(this.keys.channel(agentId), message)
    else await this.redis.publish(this.keys.channel(agentId), message)
  }

  async send (instanceId: string, message: object): Promise<void> {
    await this.redis.publish(this.keys.inbox(instanceId), JSON.stringify(message))
  }

  /**
   * Loads the hot scripts, so that they need not send their bodies (EVALSHA). Again after Redis restarts. On a
   * Redis Cluster on every primary (a script call goes to the node of its keys).
   */
  async loadScripts (): Promise<void> {
    const nodes = isCluster(this.redis) ? this.redis.nodes('master') : [this.redis]
    const bodies = [this.scripts.publishSample, this.scripts.changeDemand, READ_AGENT, this.sharded ? RENEW_ON_NODE : RENEW]
    await Promise.all(nodes.flatMap((node) => bodies.map((body) => node.script('LOAD', body))))
  }

  /** Redis's clock now, as the recent replies tell it (ms). */
  redisNow (): number {
    return this.clock.now()
  }

  /** Redis's clock in a reply to a call sent at `sentAt` (see RedisClock). */
  private redisClock (value: unknown, sentAt: number): number {
    const at = Number(value)
    if (Number.isSafeInteger(at)) this.clock.observe(at, sentAt)
    return at
  }

  // EVALSHA, with the body sent only when Redis does not have it (new or restarted).
  private async script (body: string, keys: string[], args: Array<string | number>): Promise<unknown> {
    let sha = this.shas.get(body)
    if (sha === undefined) {
      sha = createHash('sha1').update(body).digest('hex')
      this.shas.set(body, sha)
    }
    try {
      return await this.redis.evalsha(sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!String((err as Error).message).includes('NOSCRIPT')) throw err
      return this.redis.eval(body, keys.length, ...keys, ...args)
    }
  }

  // The record of a live task and the stream's description outlive the lease, so that a successor finds them
  // after the lease ran out.
  private get recordTtlMs (): number {
    return this.leaseMs * 3
  }

  /** An agent's demand hash expires once nobody renewed it for this long (every instance left it). */
  private get idleTtlMs (): number {
    return this.leaseMs * 3
  }

  // How long a frozen owner may stay away and still learn that its task was stopped for it.
  private get stoppedTtlMs (): number {
    return Math.max(this.leaseMs * 30, 600_000)
  }
}

/** A Redis Cluster error that says the keys of one call are no longer on one node. */
function slotsMoved (err: unknown): boolean {
  return /^(CROSSSLOT|MOVED|ASK|TRYAGAIN)\b|non local key/.test(String((err as Error)?.message))
}
