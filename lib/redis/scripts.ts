/**
 * The coordinator's Lua scripts. Each touches the keys of one agent only (one hash slot on a Redis Cluster),
 * except RENEW (every agent this instance tracks; on a Redis Cluster, one call per node, see RENEW_ON_NODE)
 * and, on a single Redis, PUBLISH_SAMPLE (the agent's lease and the one event id counter; a Redis Cluster
 * has SHARDED_SAMPLE instead). Deadlines use Redis's clock (TIME), so that instances' clocks never have to
 * agree; every read returns that clock, so that a reader can tell an older read from a newer one (the
 * replies of two connections may arrive in any order).
 *
 * The scripts that publish on an agent's channel come in two forms, `PUBLISH` on a single Redis and
 * `SPUBLISH` (sharded pub/sub: the message stays on the shard of the agent's slot) on a Redis Cluster:
 * see {@link agentScripts}.
 */

const NOW = `local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)`

// The demand fields of live instances (field 'i:<instanceId>', value '<deadline ms>|<json>'); a field past its
// deadline is an instance that stopped renewing (killed, frozen, cut off): removed.
const LIVE_FIELDS = `local function liveFields (key, now)
  local fields = redis.call('HGETALL', key)
  local live = {}
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    local deadline = tonumber(string.match(value, '^(%d+)|'))
    if string.sub(name, 1, 2) ~= 'i:' or deadline == nil or deadline < now then
      redis.call('HDEL', key, name)
    else
      live[#live + 1] = string.sub(name, 3)
      live[#live + 1] = value
    end
  end
  return live
end`

/** One agent as it is now (KEYS: owner, demand, info). Returns [now, owner, info, live fields]. */
export const READ_AGENT = `${NOW}
${LIVE_FIELDS}
return {now, redis.call('GET', KEYS[1]) or false, redis.call('GET', KEYS[3]) or false, liveFields(KEYS[2], now)}`

/**
 * The renewal: one call for everything an instance keeps in Redis. Per agent, KEYS owner, task, demand, info and
 * ARGV mode ('o' owned, 'w' wanted: this instance has demand or had it, 'q' only read) and this instance's demand
 * value ('' for none); ARGV[1..4] instanceId, leaseMs, taskTtlMs, idleTtlMs. Owned leases are renewed (1) or
 * re-taken after Redis lost them (2), 0 when another instance holds them; a free lease of a wanted agent is
 * taken (3). Returns [now, [outcome, owner, info, live fields] per agent].
 */
export const RENEW = renewal(`for a = 0, #KEYS / 4 - 1 do
  local ownerKey, taskKey, demandKey, infoKey = KEYS[a * 4 + 1], KEYS[a * 4 + 2], KEYS[a * 4 + 3], KEYS[a * 4 + 4]
  local mode, value = ARGV[5 + a * 2], ARGV[6 + a * 2]`)

/**
 * RENEW on a Redis Cluster, for the agents whose slots one node serves. Redis refuses declared keys of more than
 * one slot, but lets a script that says so (`allow-cross-slot-keys`) reach keys of other slots on its node: KEYS
 * are the first agent's (they route the call to the node), and ARGV carries every agent's four key names after
 * its mode and demand (ARGV[5..]: mode, value, owner, task, demand, info per agent).
 */
export const RENEW_ON_NODE = `#!lua flags=allow-cross-slot-keys
${renewal(`for a = 0, (#ARGV - 4) / 6 - 1 do
  local at = 5 + a * 6
  local mode, value = ARGV[at], ARGV[at + 1]
  local ownerKey, taskKey, demandKey, infoKey = ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5]`)}`

/** The renewal's body; `loop` opens the loop over the agents and names their keys, mode and demand value. */
function renewal (loop: string): string {
  return `${NOW}
${LIVE_FIELDS}
local me, lease = ARGV[1], tonumber(ARGV[2])
local out = {now}
${loop}
  local owner = redis.call('GET', ownerKey)
  local outcome = 0
  if mode == 'o' then
    if owner == me then
      redis.call('PEXPIRE', ownerKey, lease)
      redis.call('PEXPIRE', taskKey, ARGV[3])
      redis.call('PEXPIRE', infoKey, ARGV[3])
      outcome = 1
    elseif not owner then
      redis.call('SET', ownerKey, me, 'PX', lease)
      owner = me
      outcome = 2
    end
  elseif value ~= '' and not owner then
    redis.call('SET', ownerKey, me, 'PX', lease)
    owner = me
    outcome = 3
  end
  if value ~= '' then
    redis.call('HSET', demandKey, 'i:' .. me, (now + lease) .. '|' .. value)
    redis.call('PEXPIRE', demandKey, ARGV[4])
  elseif mode ~= 'q' then
    redis.call('HDEL', demandKey, 'i:' .. me)
  end
  out[#out + 1] = {outcome, owner or false, redis.call('GET', infoKey) or false, liveFields(demandKey, now)}
end
return out`
}

/** The scripts that publish on an agent's channel, for a single Redis or (sharded pub/sub) a Redis Cluster. */
export interface AgentScripts {
  /**
   * A demand change of one instance for one agent (KEYS: owner, demand, info; ARGV: instanceId, value or '' for
   * none, leaseMs, idleTtlMs, the agent's channel). Takes the lease if it is free and the instance has demand;
   * tells the instances that listen to the agent (its owner, and every instance with clients of it) the agent's
   * demand as it is now, so that none of them need read it. Returns [now, acquired, owner, info, live fields].
   */
  changeDemand: string
  /**
   * The owner describes its stream (KEYS: owner, info, task; ARGV: instanceId, info, task record or '', ttlMs,
   * channel, message prefix). Fenced: only the lease holder. The message carries Redis's clock.
   */
  publishInfo: string
  /** Deletes the lease, the task record and the stream's description only if the lease is ours, and says so. */
  release: string
  /**
   * A sample, fenced: only the lease holder publishes (KEYS: owner, event id counter, latest sample; ARGV:
   * instanceId, floor, channel, payload, counter ttlMs). Returns its event id, 0 if the lease is not ours.
   */
  publishSample: string
  /**
   * How the owner's stream ended for the cluster (an end or a failure), fenced (KEYS: owner, ending; ARGV:
   * instanceId, channel, message, ttlMs). The message is also kept, so that an instance that hears it for a task
   * it never heard of (it subscribed while the task ran) can tell it from a forged one.
   */
  publishEnding: string
}

/** The scripts for a single Redis (`PUBLISH`) or a Redis Cluster (`SPUBLISH`, per-agent event ids). */
export function agentScripts (sharded: boolean): AgentScripts {
  const publish = sharded ? 'SPUBLISH' : 'PUBLISH'
  return {
    changeDemand: `${NOW}
${LIVE_FIELDS}
local field = 'i:' .. ARGV[1]
local changed
if ARGV[2] == '' then
  changed = redis.call('HDEL', KEYS[2], field) == 1
else
  redis.call('HSET', KEYS[2], field, (now + tonumber(ARGV[3])) .. '|' .. ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  changed = true
end
local owner = redis.call('GET', KEYS[1])
local acquired = 0
if not owner and ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  owner = ARGV[1]
  acquired = 1
end
local live = liveFields(KEYS[2], now)
if owner and changed then
  redis.call('${publish}', ARGV[5], 'd\\n' .. now .. '\\n' .. (#live == 0 and '[]' or cjson.encode(live)))
end
return {now, acquired, owner or false, redis.call('GET', KEYS[3]) or false, live}`,
    publishInfo: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
${NOW}
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4]) end
redis.call('${publish}', ARGV[5], ARGV[6] .. now .. '\\n' .. ARGV[2])
return 1`,
    release: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
${NOW}
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('${publish}', ARGV[2], ARGV[3] .. now .. '\\n' .. ARGV[4])
return 1`,
    publishSample: sharded ? SHARDED_SAMPLE : PUBLISH_SAMPLE,
    publishEnding: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('${publish}', ARGV[2], ARGV[3])
return 1`
  }
}

// The agent's latest sample (the message as published), for an instance that starts listening to the agent:
// a sample published while its subscription was on its way reaches it this way. Kept for the stream's
// interval (the payload starts with it), as a single process gives a joining client only a sample younger than that.
const KEEP_LATEST = `local interval = tonumber(string.match(ARGV[4], '^(%d+)\\n')) or 1
redis.call('SET', KEYS[3], message, 'PX', interval * 1000)`

// On a single Redis: ids come from one INCR counter for every agent, so that ids order samples across agents
// exactly (a fleet connection resumes every agent from one Last-Event-ID). Never below what the owner has
// already seen (`floor`), so they keep increasing even if Redis lost the counter.
const PUBLISH_SAMPLE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local id = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[2])
if id <= floor then id = floor + 1 redis.call('SET', KEYS[2], id) end
local message = 's\\n' .. id .. '\\n' .. ARGV[4]
${KEEP_LATEST}
redis.call('PUBLISH', ARGV[3], message)
return id`

// On a Redis Cluster one counter for every agent would be a key in another slot (and one hot key): each agent
// has its own, in its slot, and its ids follow Redis's clock in 1/64 ms (2^48 lasts until 2109), one above the
// agent's last id when samples come faster. Ids then increase per agent and across agents as far as the
// shards' clocks agree. The counter expires when the agent stops publishing; the clock carries on for it.
// Lua formats a number of 15 digits as 1.1e+14: '%.0f' keeps every digit.
const SHARDED_SAMPLE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local clock = redis.call('TIME')
local id = tonumber(clock[1]) * 64000 + math.floor(tonumber(clock[2]) * 64 / 1000)
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local floor = tonumber(ARGV[2])
if id <= last then id = last + 1 end
if id <= floor then id = floor + 1 end
local text = string.format('%.0f', id)
redis.call('SET', KEYS[2], text, 'PX', ARGV[5])
local message = 's\\n' .. text .. '\\n' .. ARGV[4]
${KEEP_LATEST}
redis.call('SPUBLISH', ARGV[3], message)
return text`

// A new owner takes the record of its predecessor's task: whoever takes it stops that task, and the
// predecessor (frozen, cut off) learns from the stopped set that it must not stop it again.
export const TAKE_PREVIOUS_TASK = `local text = redis.call('GET', KEYS[1])
if not text then return false end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[2], text)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return text`

// Before an owner stops a task: 0 if a successor already took (and stops) it, else 1, and the record goes.
// The mark is used once: a restarted instance with the same id may run a task of the same id again.
export const CLAIM_STOP = `if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`
