import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { parseAgentRead, type AgentRead } from './agent-views.js'
import type { ClusterKeys } from './keys.js'
import { parseTaskRecord, taskRecord, type InstanceDemand } from './records.js'
import {
  CHANGE_DEMAND,
  CLAIM_STOP,
  PUBLISH_FENCED,
  PUBLISH_INFO,
  PUBLISH_SAMPLE,
  READ_AGENT,
  RELEASE,
  RENEW,
  TAKE_PREVIOUS_TASK
} from './scripts.js'

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

/** Every Redis command the coordinator sends. */
export class RedisStore {
  private readonly shas = new Map<string, string>()
  /** Redis's clock minus this process's, as of the last script that told it. */
  private clockOffset = 0

  constructor (
    private readonly redis: Redis,
    readonly keys: ClusterKeys,
    readonly instanceId: string,
    private readonly leaseMs: number,
    /** Told about a record read from Redis that does not pass validation (then left out). */
    private readonly dropped: (what: string, agentId: string) => void
  ) {}

  /**
   * Renews every lease and demand record of this instance and reads back each agent's owner, description and
   * demand: one script call. On a Redis Cluster the agents would be grouped by hash slot, one call per slot.
   */
  async renew (agents: Renewal[], ownedStreaming: string[]): Promise<Map<string, Renewed>> {
    const renewed = new Map<string, Renewed>()
    const pipeline = this.redis.pipeline()
    if (agents.length > 0) {
      const keys = agents.flatMap(({ agentId }) => [this.keys.owner(agentId), this.keys.task(agentId), this.keys.demand(agentId), this.keys.info(agentId)])
      const args = agents.flatMap(({ mode, demand }) => [mode, demand])
      pipeline.eval(RENEW, keys.length, ...keys, this.instanceId, this.leaseMs, this.recordTtlMs, this.idleTtlMs, ...args)
    }
    // The index of streamed agents (GET /streams): a key of its own, so its own command.
    const deadline = Date.now() + this.leaseMs
    if (ownedStreaming.length > 0) pipeline.zadd(this.keys.streams, ...ownedStreaming.flatMap((agentId) => [deadline, agentId]))
    if (agents.length === 0 && ownedStreaming.length === 0) pipeline.ping()
    const results = await pipeline.exec()
    if (results === null) throw new Error('pipeline aborted')
    for (const [err] of results) if (err) throw err
    if (agents.length === 0) return renewed
    const reply = results[0]![1] as unknown[]
    const at = this.redisClock(reply[0])
    agents.forEach(({ agentId }, index) => {
      const [outcome, owner, info, fields] = reply[index + 1] as unknown[]
      renewed.set(agentId, { outcome: Number(outcome), read: parseAgentRead(at, owner, info, fields, (what) => this.dropped(what, agentId)) })
    })
    return renewed
  }

  /** Writes this instance's demand for the agent ('' for none), takes a free lease, tells the owner. */
  async changeDemand (agentId: string, demand: string): Promise<DemandChanged> {
    const keys = [this.keys.owner(agentId), this.keys.demand(agentId), this.keys.info(agentId)]
    const message = JSON.stringify({ op: 'demand', agentId })
    const reply = await this.script(CHANGE_DEMAND, keys, [this.instanceId, demand, this.leaseMs, this.idleTtlMs, this.keys.inbox(''), message]) as unknown[]
    const [at, acquired, owner, info, fields] = reply
    return { acquired: Number(acquired) === 1, read: parseAgentRead(this.redisClock(at), owner, info, fields, (what) => this.dropped(what, agentId)) }
  }

  /**
   * The agent's demand alone (the owner, told that it changed): one HGETALL. Records past their deadline (on
   * Redis's clock, as of the last script) are left out here, and removed by the next script that reads them.
   */
  async readDemand (agentId: string): Promise<Map<string, InstanceDemand>> {
    const hash = await this.redis.hgetall(this.keys.demand(agentId))
    const now = Date.now() + this.clockOffset
    const fields: string[] = []
    for (const [name, value] of Object.entries(hash)) {
      const deadline = Number(/^(\d+)\|/.exec(value)?.[1])
      if (name.startsWith('i:') && deadline >= now) fields.push(name.slice(2), value)
    }
    return parseAgentRead(now, null, null, fields, (what) => this.dropped(what, agentId)).demands
  }

  async readAgent (agentId: string): Promise<AgentRead> {
    const keys = [this.keys.owner(agentId), this.keys.demand(agentId), this.keys.info(agentId)]
    const [at, owner, info, fields] = await this.script(READ_AGENT, keys, []) as unknown[]
    return parseAgentRead(this.redisClock(at), owner, info, fields, (what) => this.dropped(what, agentId))
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
    return Number(await this.redis.eval(PUBLISH_INFO, keys.length, ...keys, this.instanceId, info, record, this.recordTtlMs, this.keys.channel(agentId), 'i\n')) === 1
  }

  /** Gives the lease up (if it is still ours) and tells the agent's watchers that the stream is idle. */
  async release (agentId: string, idleInfo: string): Promise<void> {
    const keys = [this.keys.owner(agentId), this.keys.task(agentId), this.keys.info(agentId)]
    await Promise.all([
      this.redis.eval(RELEASE, keys.length, ...keys, this.instanceId, this.keys.channel(agentId), 'i\n', idleInfo),
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
    return Number(await this.script(PUBLISH_SAMPLE, [this.keys.owner(agentId), this.keys.eventId], [this.instanceId, floor, this.keys.channel(agentId), payload]))
  }

  /** Publishes on the agent's channel only while holding its lease. */
  async publishAsOwner (agentId: string, message: string): Promise<boolean> {
    // EVAL, not EVALSHA: a NOSCRIPT retry could land after a later release of the lease and be refused.
    return Number(await this.redis.eval(PUBLISH_FENCED, 1, this.keys.owner(agentId), this.instanceId, this.keys.channel(agentId), message)) === 1
  }

  async publishToAgent (agentId: string, message: string): Promise<void> {
    await this.redis.publish(this.keys.channel(agentId), message)
  }

  async send (instanceId: string, message: object): Promise<void> {
    await this.redis.publish(this.keys.inbox(instanceId), JSON.stringify(message))
  }

  /** Loads the hot scripts, so that they need not send their bodies (EVALSHA). Again after Redis restarts. */
  async loadScripts (): Promise<void> {
    await Promise.all([PUBLISH_SAMPLE, CHANGE_DEMAND, READ_AGENT].map((body) => this.redis.script('LOAD', body)))
  }

  private redisClock (value: unknown): number {
    const at = Number(value)
    if (Number.isSafeInteger(at)) this.clockOffset = at - Date.now()
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
