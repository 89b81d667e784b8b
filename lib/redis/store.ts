import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { StreamState } from '../lifecycle/types.js'

/** One instance's demand for an agent, as it publishes it under its lease. */
export interface InstanceDemand {
  /** SSE clients on the instance. */
  c: number
  /** [interval, clients asking for it] pairs. */
  i: Array<[number, number]>
  /** The instance's manual hold interval, or null. */
  h: number | null
  /** The newest event id the instance has seen (a floor for ids after Redis lost its counter). */
  e: number
}

/** What an owner publishes about a stream it runs. */
export interface OwnedStreamInfo {
  state: StreamState
  task_id: string | null
  interval_seconds: number | null
  started_at: string | null
}

/** Everything an instance publishes, one key per instance, expiring with its lease. */
export interface InstanceSnapshot {
  agents: Record<string, InstanceDemand>
  owned: Record<string, OwnedStreamInfo>
}

/** What one read of the cluster returns: live instances' snapshots and the agents' owners. */
export interface ClusterRead {
  snapshots: Map<string, InstanceSnapshot>
  owners: Map<string, string>
}

// One call renews every lease of this instance (KEYS: owner, task, owner, task, ...): each is kept (1) or re-taken
// (2, after Redis lost its data) if it is ours or free, with the record of its task; 0 if another instance has it.
// On a Redis Cluster the keys of one call must share a slot: one call per slot (or per node, with hash tags
// grouped per node) would be needed there.
const RENEW_ALL = `local results = {}
for i = 1, #KEYS, 2 do
  local owner = redis.call('GET', KEYS[i])
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[3])
    results[#results + 1] = 1
  elseif not owner then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    results[#results + 1] = 2
  else
    results[#results + 1] = 0
  end
end
return results`

// Deletes the lease (and the record of the task that ran under it) only if it is ours.
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) return 1 end
return 0`

// A new owner takes the record of its predecessor's task: whoever takes it stops that task, and the
// predecessor (frozen, cut off) learns from the stopped set that it must not stop it again.
const TAKE_PREVIOUS_TASK = `local text = redis.call('GET', KEYS[1])
if not text then return false end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[2], text)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return text`

// Before an owner stops a task: 0 if a successor already took (and stops) it, else 1, and the record goes.
// The mark is used once: a restarted instance with the same id may run a task of the same id again.
const CLAIM_STOP = `if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`

// Fenced: only the lease holder publishes. Ids come from INCR, never below what the owner has
// already seen (`floor`), so they keep increasing even if Redis lost the counter.
const PUBLISH_SAMPLE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local id = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[2])
if id <= floor then id = floor + 1 redis.call('SET', KEYS[2], id) end
redis.call('PUBLISH', ARGV[3], 's\\n' .. id .. '\\n' .. ARGV[4])
return id`

// Only the lease holder records its task: a stale owner must not overwrite what a successor will stop.
const RECORD_TASK = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1`

const PUBLISH_FENCED = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`

const publishSampleSha = createHash('sha1').update(PUBLISH_SAMPLE).digest('hex')

/** Every Redis command the coordinator sends, with its key layout. */
export class RedisStore {
  readonly broadcastChannel: string
  private readonly instancesKey: string

  constructor (private readonly redis: Redis, private readonly prefix: string, readonly instanceId: string, private readonly leaseMs: number) {
    this.broadcastChannel = `${prefix}events`
    this.instancesKey = `${prefix}instances`
  }

  inboxChannel (instanceId: string): string {
    return `${this.prefix}inbox:${instanceId}`
  }

  /** Publishes this instance's snapshot under its lease, renews the agent leases it holds, and reads the cluster. */
  async sync (snapshot: InstanceSnapshot, ownedAgents: string[]): Promise<{ renewed: Map<string, number>, cluster: ClusterRead }> {
    const pipeline = this.redis.pipeline()
      .set(this.instanceKey(this.instanceId), JSON.stringify(snapshot), 'PX', this.leaseMs)
      .sadd(this.instancesKey, this.instanceId)
    if (ownedAgents.length > 0) {
      const keys = ownedAgents.flatMap((agentId) => [this.ownerKey(agentId), this.taskKey(agentId)])
      pipeline.eval(RENEW_ALL, keys.length, ...keys, this.instanceId, this.leaseMs, this.taskTtlMs)
    }
    pipeline.smembers(this.instancesKey)
    const results = await pipeline.exec()
    if (results === null) throw new Error('pipeline aborted')
    for (const [err] of results) if (err) throw err
    const renewed = new Map<string, number>()
    if (ownedAgents.length > 0) {
      const outcomes = results[2]![1] as unknown[]
      ownedAgents.forEach((agentId, index) => renewed.set(agentId, Number(outcomes[index])))
    }
    const members = results[results.length - 1]![1] as string[]
    return { renewed, cluster: await this.read(members) }
  }

  private async read (members: string[]): Promise<ClusterRead> {
    const snapshots = new Map<string, InstanceSnapshot>()
    const texts = members.length === 0 ? [] : await this.redis.mget(members.map((id) => this.instanceKey(id)))
    const gone: string[] = []
    members.forEach((id, index) => {
      const snapshot = parseSnapshot(texts[index])
      if (snapshot === null) gone.push(id)
      else snapshots.set(id, snapshot)
    })
    // Instances whose lease expired (killed, frozen, cut off) leave the set.
    if (gone.length > 0) await this.redis.srem(this.instancesKey, ...gone)
    const agents = new Set<string>()
    for (const snapshot of snapshots.values()) {
      for (const agentId of Object.keys(snapshot.agents)) agents.add(agentId)
      for (const agentId of Object.keys(snapshot.owned)) agents.add(agentId)
    }
    const owners = new Map<string, string>()
    if (agents.size > 0) {
      const ids = [...agents]
      const values = await this.redis.mget(ids.map((agentId) => this.ownerKey(agentId)))
      ids.forEach((agentId, index) => { if (typeof values[index] === 'string') owners.set(agentId, values[index]!) })
    }
    return { snapshots, owners }
  }

  /** Takes the agent's lease if nobody holds it. */
  async acquire (agentId: string): Promise<boolean> {
    return (await this.redis.set(this.ownerKey(agentId), this.instanceId, 'PX', this.leaseMs, 'NX')) === 'OK'
  }

  /**
   * Takes the task a previous owner recorded for the agent and did not clear (it died or lost its lease):
   * the caller stops it, and the previous owner, should it come back, does not.
   */
  async takePreviousTask (agentId: string): Promise<{ owner: string, taskId: string } | null> {
    const text = await this.redis.eval(TAKE_PREVIOUS_TASK, 2, this.taskKey(agentId), this.stoppedKey(agentId), this.stoppedTtlMs)
    if (typeof text !== 'string') return null
    try {
      const task = JSON.parse(text)
      return typeof task?.owner === 'string' && typeof task.taskId === 'string' ? task : null
    } catch {
      return null
    }
  }

  /** Remembers the live task so that a successor can stop it if this instance dies. */
  async recordTask (agentId: string, taskId: string): Promise<void> {
    await this.redis.eval(RECORD_TASK, 2, this.ownerKey(agentId), this.taskKey(agentId), this.instanceId, taskRecord(this.instanceId, taskId), this.taskTtlMs)
  }

  /** Whether this instance is to stop its task: false if a successor took it over (and stops it). */
  async claimStop (agentId: string, taskId: string): Promise<boolean> {
    return Number(await this.redis.eval(CLAIM_STOP, 2, this.taskKey(agentId), this.stoppedKey(agentId), taskRecord(this.instanceId, taskId))) === 1
  }

  async release (agentId: string): Promise<void> {
    await this.redis.eval(RELEASE, 2, this.ownerKey(agentId), this.taskKey(agentId), this.instanceId)
  }

  /** Loads the per-sample script, so that samples need not send its body (EVALSHA). Again after Redis restarts. */
  async loadScripts (): Promise<void> {
    await this.redis.script('LOAD', PUBLISH_SAMPLE)
  }

  /** The assigned event id, or 0 if this instance no longer holds the agent's lease. */
  async publishSample (agentId: string, floor: number, payload: string): Promise<number> {
    return Number(await this.publishScript([this.ownerKey(agentId), this.eventIdKey], [this.instanceId, floor, this.broadcastChannel, payload]))
  }

  /** Publishes on the broadcast channel only while holding the agent's lease. */
  async publishAsOwner (agentId: string, message: string): Promise<boolean> {
    // EVAL, not EVALSHA: a NOSCRIPT retry could land after a later release of the lease and be refused.
    return Number(await this.redis.eval(PUBLISH_FENCED, 1, this.ownerKey(agentId), this.instanceId, this.broadcastChannel, message)) === 1
  }

  async broadcast (message: string): Promise<void> {
    await this.redis.publish(this.broadcastChannel, message)
  }

  async send (instanceId: string, message: object): Promise<void> {
    await this.redis.publish(this.inboxChannel(instanceId), JSON.stringify(message))
  }

  /** Leaves the cluster at once (graceful close) instead of waiting for the lease to expire. */
  async leave (): Promise<void> {
    await this.redis.multi().del(this.instanceKey(this.instanceId)).srem(this.instancesKey, this.instanceId).exec()
  }

  // The hot path: EVALSHA, with the body sent only when Redis does not have it (new or restarted).
  private async publishScript (keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await this.redis.evalsha(publishSampleSha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!String((err as Error).message).includes('NOSCRIPT')) throw err
      return this.redis.eval(PUBLISH_SAMPLE, keys.length, ...keys, ...args)
    }
  }

  private instanceKey (instanceId: string): string {
    return `${this.prefix}instance:${instanceId}`
  }

  // Every key of one agent carries the agent id as a hash tag ({agentId}): on a Redis Cluster they share a slot,
  // so that a script may touch them together.
  private ownerKey (agentId: string): string {
    return `${this.prefix}{${agentId}}:owner`
  }

  private taskKey (agentId: string): string {
    return `${this.prefix}{${agentId}}:task`
  }

  /** Tasks a successor took over (and stopped): their first owner must not stop them again. */
  private stoppedKey (agentId: string): string {
    return `${this.prefix}{${agentId}}:stopped`
  }

  // The record of a live task outlives its lease, so that a successor finds it after the lease ran out.
  private get taskTtlMs (): number {
    return this.leaseMs * 3
  }

  // How long a frozen owner may stay away and still learn that its task was stopped for it.
  private get stoppedTtlMs (): number {
    return Math.max(this.leaseMs * 30, 600_000)
  }

  // One sequence for every agent of the cluster: a fleet connection's Last-Event-ID then locates a point in every
  // agent's history at once, and ids are strictly increasing on a connection whatever agents it watches.
  private get eventIdKey (): string {
    return `${this.prefix}event-id`
  }
}

function taskRecord (owner: string, taskId: string): string {
  return JSON.stringify({ owner, taskId })
}

function parseSnapshot (text: string | null | undefined): InstanceSnapshot | null {
  if (typeof text !== 'string') return null
  try {
    const snapshot = JSON.parse(text)
    if (typeof snapshot?.agents !== 'object' || typeof snapshot.owned !== 'object') return null
    return snapshot
  } catch {
    return null
  }
}
