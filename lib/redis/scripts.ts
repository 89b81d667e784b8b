/**
 * The coordinator's Lua scripts. Each touches the keys of one agent only (one hash slot on a Redis Cluster),
 * except RENEW (every agent this instance tracks: one call per slot, or per node, on a Redis Cluster) and
 * PUBLISH_SAMPLE (the agent's lease and the cluster's event id counter). Deadlines use Redis's clock (TIME),
 * so that instances' clocks never have to agree; every read returns that clock, so that a reader can tell an
 * older read from a newer one (the replies of two connections may arrive in any order).
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

/**
 * A demand change of one instance for one agent (KEYS: owner, demand, info; ARGV: instanceId, value or '' for
 * none, leaseMs, idleTtlMs, the owner inbox prefix, the message for the owner). Takes the lease if it is free and
 * the instance has demand; tells the owner (only the owner) that the agent's demand changed.
 * Returns [now, acquired, owner, info, live fields].
 */
export const CHANGE_DEMAND = `${NOW}
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
if owner and owner ~= ARGV[1] and changed then redis.call('PUBLISH', ARGV[5] .. owner, ARGV[6]) end
return {now, acquired, owner or false, redis.call('GET', KEYS[3]) or false, liveFields(KEYS[2], now)}`

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
export const RENEW = `${NOW}
${LIVE_FIELDS}
local me, lease = ARGV[1], tonumber(ARGV[2])
local out = {now}
for a = 0, #KEYS / 4 - 1 do
  local ownerKey, taskKey, demandKey, infoKey = KEYS[a * 4 + 1], KEYS[a * 4 + 2], KEYS[a * 4 + 3], KEYS[a * 4 + 4]
  local mode, value = ARGV[5 + a * 2], ARGV[6 + a * 2]
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

/**
 * The owner describes its stream (KEYS: owner, info, task; ARGV: instanceId, info, task record or '', ttlMs,
 * channel, message prefix). Fenced: only the lease holder. The message carries Redis's clock.
 */
export const PUBLISH_INFO = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
${NOW}
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4]) end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. now .. '\\n' .. ARGV[2])
return 1`

/** Deletes the lease, the task record and the stream's description only if the lease is ours, and says so. */
export const RELEASE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
${NOW}
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. now .. '\\n' .. ARGV[4])
return 1`

// Fenced: only the lease holder publishes. Ids come from INCR, never below what the owner has
// already seen (`floor`), so they keep increasing even if Redis lost the counter.
export const PUBLISH_SAMPLE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local id = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[2])
if id <= floor then id = floor + 1 redis.call('SET', KEYS[2], id) end
redis.call('PUBLISH', ARGV[3], 's\\n' .. id .. '\\n' .. ARGV[4])
return id`

export const PUBLISH_FENCED = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`

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
