// Cluster benchmark: `npm run bench:cluster` (run `npm run build` first: it uses dist/ through the package's
// self-reference, or the directory in BENCH_AGENT_SSE_DIR, e.g. a clone of an older commit).
// Options: --sizes=2x100,8x100 (instances x agents per instance), --lease-ms=10000, --idle-ms=<lease-ms>,
//          --changes=6, --samples=200, --failovers=1, --phases=costs,agreement,failover,
//          --redis-cluster (a 3-master Redis Cluster instead of one redis-server), --json=FILE,
//          --wait-for=bench/run.js (before each size, wait while a process matching it runs; '' to not wait)
//
// N cluster instances (StreamLifecycle + redisCoordinator, no HTTP) run in this process on a Redis the
// benchmark starts on free ports (bench/redis-servers.js). Each instance has A agents of its own with one
// subscriber each (disjoint), so every agent is owned by the instance that watches it.
//
// costs, from Redis's own counters summed over its nodes (bench/redis-counters.js; their own cost subtracted):
//   - a demand change: one subscriber joining (then leaving) an agent that is already streaming, on another
//     instance than its owner: commands and bytes (in + out of Redis) within 300 ms of it, the median over
//     several changes, each in a window without a renewal of any instance (tried again until it is);
//   - idle: commands/s and bytes/s with nothing changing (renewals only), over a whole lease (three renewals);
//   - a sample: bytes out of Redis per sample the owner publishes (bursts of samples of one agent, the median of
//     three bursts without a renewal), with one instance watching the agent (disjoint) and with every instance
//     watching it.
// agreement, wall-clock times polled every millisecond, median and max over several changes (each after a
// random part of a renewal period, so that changes fall anywhere between two renewals):
//   - a subscriber joins (leaves) an agent on instance 1 until the owner's status counts it, and until a third
//     instance that also watches the agent counts it (N >= 3; the README promises one renewal period);
//   - the owner re-tunes its stream (a hold at a shorter interval set on the owner, then released) until the
//     owner's status shows the new interval, and until a watching instance's status does. The bench adapter
//     has no changeInterval, so a re-tune is a stop and a start (before a28608f an in-place re-tune was not
//     told to the other instances: it timed out here).
// failover: an extra instance in a process of its own (bench/cluster-instance.js) owns A agents, each also
//   watched by one of the N instances here; it is SIGKILLed, and each agent's time until its watcher gets the
//   first sample of the stream it now runs itself is taken (median and max over the agents), beside the
//   README's bound, leaseMs plus one renewal (leaseMs x 4/3).
// Each size also reports the load average, this process's event-loop delay and the instances' warnings (lost
// leases, takeovers), which tell a run whose process could not keep up.
// Commands are counted twice: "in Redis" sums INFO commandstats (commands run inside scripts included, INFO
// excluded), "sent" counts what the instances' ioredis clients sent (a script call is one).
import { fork, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { benchAdapter } from './cluster-adapter.js'
import { counters, delta, lastRenewalSent, minus, probeCost } from './redis-counters.js'
import { startRedis, startRedisCluster } from './redis-servers.js'

const args = Object.fromEntries(process.argv.slice(2).map((arg) => {
  const [key, value] = arg.replace(/^--/, '').split('=')
  return [key, value ?? true]
}))
const sizes = String(args.sizes ?? '2x100,8x100').split(',').map((size) => size.split('x').map(Number))
const leaseMs = Number(args['lease-ms'] ?? 10000)
const renewMs = Math.floor(leaseMs / 3)
const idleMs = Number(args['idle-ms'] ?? leaseMs)
const changes = Number(args.changes ?? 6)
const sampleBurst = Number(args.samples ?? 200)
const failovers = Number(args.failovers ?? 1)
const phases = new Set(String(args.phases ?? 'costs,agreement,failover').split(','))
const onCluster = args['redis-cluster'] === true
const waitFor = String(args['wait-for'] ?? 'bench/run.js')

const base = process.env.BENCH_AGENT_SSE_DIR
const { StreamLifecycle } = await import(base ? pathToFileURL(path.join(base, 'dist/esm/index.js')).href : 'fastify-agent-sse')
const { redisCoordinator } = await import(base ? pathToFileURL(path.join(base, 'dist/esm/redis/index.js')).href : 'fastify-agent-sse/redis')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const payload = { cpu: 0.5, memory: 123456789, disk: 0.25, net: { rx: 1234, tx: 5678 }, note: 'x'.repeat(150) }

async function until (check, what, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Another person's CPU benchmark on this machine would skew every time measured here: wait for it to end. */
async function waitForOtherBenchmarks () {
  if (waitFor === '') return
  let said = false
  while (spawnSync('pgrep', ['-f', waitFor]).status === 0) {
    if (!said) process.stderr.write(`waiting: a process matching "${waitFor}" is running\n`)
    said = true
    await sleep(5000)
  }
}

/**
 * The instances' warnings and errors, counted by message with ids and numbers taken out (a lease lost, a
 * takeover...): a run whose process could not keep up shows here, and in the event loop's delay.
 */
const warnings = new Map()
const countingLogger = {
  info () {},
  warn (_fields, message) { count(message) },
  error (_fields, message) { count(message) }
}
function count (message) {
  const kind = String(message).replace(/\b(agent|instance|task|of|from)\s+\S+/gi, '$1 …').replace(/\d+/g, 'N').slice(0, 90)
  warnings.set(kind, (warnings.get(kind) ?? 0) + 1)
}

async function startInstances (redis, n) {
  const instances = []
  for (let index = 0; index < n; index++) {
    const id = `i${index}`
    const client = redis.client()
    client.on('error', () => {})
    const adapter = benchAdapter(id)
    const lifecycle = new StreamLifecycle({ adapter, stopDelayMs: 1000, logger: countingLogger, coordinator: redisCoordinator({ redis: client, keyPrefix: 'bench:', leaseMs, instanceId: id }) })
    await lifecycle.ready()
    instances.push({ id, client, adapter, lifecycle, subscriptions: [], received: 0 })
  }
  return instances
}

function median (list) {
  const pick = (key) => {
    const values = list.map((entry) => entry[key]).sort((a, b) => a - b)
    return values[Math.floor(values.length / 2)]
  }
  return { calls: pick('calls'), top: pick('top'), in: pick('in'), out: pick('out'), cpuMs: pick('cpuMs') }
}

function spread (times) {
  if (times.length === 0) return null
  const sorted = [...times].sort((a, b) => a - b)
  return { median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1], count: sorted.length, all: sorted.map(Math.round) }
}

// ---- costs -------------------------------------------------------------------------------------------------

async function measureIdle (redis, overhead) {
  const start = await counters(redis.probes)
  const startedAt = Date.now()
  await sleep(idleMs)
  const idle = minus(delta(await counters(redis.probes), start), overhead)
  const seconds = (Date.now() - startedAt) / 1000
  return { calls: idle.calls / seconds, top: idle.top / seconds, bytes: (idle.in + idle.out) / seconds, cpuMsPerSecond: idle.cpuMs / seconds }
}

/**
 * A subscriber of instance 0's agent joins on instance 1 (or leaves), settles for a moment, is measured. Only
 * windows in which no instance sent a renewal (nor just before) are kept: renewals are periodic, and with many
 * instances some of them would fall into most windows.
 */
async function measureDemandChanges (redis, instances, overhead) {
  const joiner = instances[1]
  const settleMs = 300
  const perChange = []
  let extra = null
  let attempts = 0
  while (perChange.length < changes && attempts < changes * 20) {
    attempts++
    const before = await counters(redis.probes)
    const startedAt = performance.now()
    if (extra === null) extra = joiner.lifecycle.subscribe('agent-0-0', { intervalSeconds: 1, onSample () {} })
    else { extra.unsubscribe(); extra = null }
    await sleep(settleMs)
    const after = await counters(redis.probes)
    if (lastRenewalSent() < startedAt - 100) perChange.push(minus(delta(after, before), overhead))
    await sleep(Math.random() * 200)
  }
  extra?.unsubscribe()
  if (perChange.length === 0) return { calls: NaN, top: NaN, bytes: NaN, clean: 0, attempts }
  const change = median(perChange)
  return { calls: change.calls, top: change.top, bytes: change.in + change.out, clean: perChange.length, attempts }
}

/**
 * Bursts of samples of agent-0-0 pushed by its owner; `arrived()` counts what its watchers got. As for the
 * demand changes, only bursts during which no renewal was sent are kept.
 */
async function measureSampleBursts (redis, instances, overhead, arrived, watchers) {
  const task = instances[0].adapter.tasks.get('agent-0-0')
  const perBurst = []
  for (let attempt = 0; perBurst.length < 3 && attempt < 20; attempt++) {
    const before = arrived()
    const start = await counters(redis.probes)
    const startedAt = performance.now()
    for (let i = 0; i < sampleBurst; i++) task.push({ ...payload, seq: i })
    await until(() => arrived() - before >= sampleBurst * watchers, 'the burst to arrive', 20000).catch(() => {})
    await sleep(100)
    const end = await counters(redis.probes)
    if (lastRenewalSent() < startedAt - 100) perBurst.push(minus(delta(end, start), overhead))
    await sleep(Math.random() * 200)
  }
  if (perBurst.length === 0) return { outBytes: NaN, inBytes: NaN, calls: NaN, cpuUs: NaN }
  const sample = median(perBurst)
  return { outBytes: sample.out / sampleBurst, inBytes: sample.in / sampleBurst, calls: sample.calls / sampleBurst, cpuUs: sample.cpuMs * 1000 / sampleBurst }
}

/** Every other instance subscribes to agent-0-0 too, until each has got a sample; then the bursts. */
async function measureSamplesWatchedByAll (redis, instances, overhead) {
  let arrived = 0
  const seen = new Set()
  const watchers = instances.slice(1).map((instance) => instance.lifecycle.subscribe('agent-0-0', {
    intervalSeconds: 1,
    onSample () { arrived++; seen.add(instance.id) }
  }))
  const task = instances[0].adapter.tasks.get('agent-0-0')
  await until(() => { if (seen.size < watchers.length) task.push(payload); return seen.size === watchers.length }, 'every instance to get agent-0-0', 20000)
  await sleep(500)
  const sample = await measureSampleBursts(redis, instances, overhead, () => arrived + instances[0].received, instances.length)
  for (const watcher of watchers) watcher.unsubscribe()
  return sample
}

async function measureCosts (redis, instances) {
  const overhead = await probeCost(redis.probes)
  const idle = await measureIdle(redis, overhead)
  const change = await measureDemandChanges(redis, instances, overhead)
  await sleep(500)
  const disjoint = await measureSampleBursts(redis, instances, overhead, () => instances[0].received, 1)
  const all = await measureSamplesWatchedByAll(redis, instances, overhead)
  return { change, idle, sample: { disjoint, all } }
}

// ---- agreement ---------------------------------------------------------------------------------------------

/** Polls every millisecond until each check holds; the time each took from now, in ms (null: not within timeoutMs). */
async function timeUntil (checks, timeoutMs = 3 * leaseMs) {
  const startedAt = performance.now()
  const times = checks.map(() => null)
  while (times.includes(null) && performance.now() - startedAt < timeoutMs) {
    checks.forEach((check, index) => { if (times[index] === null && check()) times[index] = performance.now() - startedAt })
    await sleep(1)
  }
  return times
}

async function measureDemandAgreement (instances) {
  const [owner, joiner, third] = instances
  const agentId = 'agent-0-1'
  const count = (instance) => instance.lifecycle.status(agentId).subscribers
  const watching = third?.lifecycle.subscribe(agentId, { intervalSeconds: 1, onSample () {} })
  const baseline = third ? 2 : 1
  if (third) await until(() => count(third) === baseline && count(owner) === baseline, 'the third instance to follow agent-0-1')
  const toOwner = []
  const toThird = []
  let extra = null
  for (let i = 0; i < changes; i++) {
    await sleep(Math.random() * renewMs)
    const expected = extra === null ? baseline + 1 : baseline
    if (extra === null) extra = joiner.lifecycle.subscribe(agentId, { intervalSeconds: 1, onSample () {} })
    else { extra.unsubscribe(); extra = null }
    const [ownerMs, thirdMs] = await timeUntil([() => count(owner) === expected, () => !third || count(third) === expected])
    toOwner.push(ownerMs ?? Infinity)
    if (third) toThird.push(thirdMs ?? Infinity)
  }
  extra?.unsubscribe()
  watching?.unsubscribe()
  return { toOwner: spread(toOwner), toThird: spread(toThird) }
}

async function measureStreamAgreement (instances) {
  const [owner, watcher] = instances
  const agentId = 'agent-retuned'
  const interval = (instance) => instance.lifecycle.status(agentId).intervalSeconds
  // The owner's client first: whichever instance's demand reaches Redis first takes the lease.
  const subscriptions = [owner.lifecycle.subscribe(agentId, { intervalSeconds: 5, onSample () {} })]
  await until(() => owner.adapter.tasks.has(agentId), 'the owner to stream agent-retuned')
  subscriptions.push(watcher.lifecycle.subscribe(agentId, { intervalSeconds: 5, onSample () {} }))
  await until(() => watcher.lifecycle.status(agentId).owner === owner.id && interval(watcher) === 5, 'the watcher to see agent-retuned at 5 s')
  const ownerSees = []
  const watcherSees = []
  const afterOwner = []
  for (let i = 0; i < changes; i++) {
    await sleep(Math.random() * renewMs)
    const expected = i % 2 === 0 ? 2 : 5
    const change = expected === 2 ? owner.lifecycle.hold(agentId, { intervalSeconds: 2 }) : owner.lifecycle.release(agentId)
    change.catch((err) => process.stderr.write(`stream change failed: ${err.message}\n`))
    const [ownerMs, watcherMs] = await timeUntil([() => interval(owner) === expected, () => interval(watcher) === expected])
    ownerSees.push(ownerMs ?? Infinity)
    watcherSees.push(watcherMs ?? Infinity)
    afterOwner.push(ownerMs === null || watcherMs === null ? Infinity : Math.max(0, watcherMs - ownerMs))
    await change.catch(() => {})
  }
  for (const subscription of subscriptions) subscription.unsubscribe()
  return { ownerSees: spread(ownerSees), watcherSees: spread(watcherSees), afterOwner: spread(afterOwner) }
}

// ---- failover ----------------------------------------------------------------------------------------------

async function measureFailover (redis, instances, agents, round) {
  const prefix = `failover-${round}-`
  const child = fork(fileURLToPath(new URL('./cluster-instance.js', import.meta.url)), [], {
    env: { ...process.env, REDIS_SEEDS: redis.seeds, REDIS_CLUSTER: onCluster ? '1' : '0', LEASE_MS: String(leaseMs), INSTANCE_ID: 'doomed', AGENTS: String(agents), AGENT_PREFIX: prefix },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  let ready = false
  let report = null
  child.on('message', (message) => {
    if (message.ready) ready = true
    if (message.report) report = message.report
  })
  try {
    await until(() => ready, 'the child instance to own its agents', 120000)
  } catch (err) {
    child.send({ report: true })
    await until(() => report !== null, 'the child to report', 5000).catch(() => {})
    child.kill('SIGKILL')
    throw new Error(`${err.message} (${report ?? 'no report'})`)
  }
  let killedAt = null
  const fromChild = new Set()
  const back = new Map() // agent index -> ms from SIGKILL to its watcher's first sample of its own stream
  const strangers = new Set() // agents whose first sample after the kill came from another instance than their watcher
  const subscriptions = []
  for (let index = 0; index < agents; index++) {
    const watcher = instances[index % instances.length]
    subscriptions.push(watcher.lifecycle.subscribe(`${prefix}${index}`, {
      intervalSeconds: 1,
      onSample (sample) {
        if (sample.instance === 'doomed') fromChild.add(index)
        else if (killedAt !== null && !back.has(index)) {
          back.set(index, performance.now() - killedAt)
          if (sample.instance !== watcher.id) strangers.add(index)
        }
      }
    }))
  }
  await until(() => { if (fromChild.size < agents) child.send({ push: true }); return fromChild.size === agents }, 'every watcher to get a sample of the child', 60000)
  await sleep(Math.random() * renewMs) // the kill falls anywhere between two of the child's renewals
  killedAt = performance.now()
  child.kill('SIGKILL')
  await until(() => back.size === agents, 'every agent to stream again', 3 * leaseMs + 30000).catch(() => {})
  for (const subscription of subscriptions) subscription.unsubscribe()
  return { times: [...back.values()], missing: agents - back.size, strangers: strangers.size }
}

// ---- one size ----------------------------------------------------------------------------------------------

async function measure (n, agentsPerInstance) {
  await waitForOtherBenchmarks()
  const loadBefore = loadavg()[0]
  warnings.clear()
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  const redis = onCluster ? await startRedisCluster() : await startRedis()
  const instances = await startInstances(redis, n)
  instances.forEach((instance, index) => {
    for (let a = 0; a < agentsPerInstance; a++) {
      instance.subscriptions.push(instance.lifecycle.subscribe(`agent-${index}-${a}`, { intervalSeconds: 1, onSample: () => { instance.received++ } }))
    }
  })
  await until(() => instances.every((instance) => instance.adapter.tasks.size === agentsPerInstance), 'every agent to stream on its instance', 300000).catch((err) => {
    const streaming = instances.reduce((sum, instance) => sum + instance.adapter.tasks.size, 0)
    throw new Error(`${err.message} (${streaming} of ${n * agentsPerInstance} do; the instances warned: ${JSON.stringify(Object.fromEntries(warnings))})`)
  })
  await sleep(Math.min(leaseMs, 3000)) // let the joins settle
  const result = { instances: n, agentsPerInstance, redis: redis.kind, leaseMs }
  if (phases.has('costs')) {
    Object.assign(result, await measureCosts(redis, instances))
    if (result.change.clean < changes) process.stderr.write(`only ${result.change.clean} of ${result.change.attempts} demand changes fell between renewals\n`)
  }
  if (phases.has('agreement')) result.agreement = { demand: await measureDemandAgreement(instances), stream: await measureStreamAgreement(instances) }
  if (phases.has('failover')) {
    const rounds = []
    for (let round = 0; round < failovers; round++) {
      rounds.push(await measureFailover(redis, instances, agentsPerInstance, round).catch((err) => {
        process.stderr.write(`failover round ${round} failed: ${err.message}\n`)
        return { times: [], missing: agentsPerInstance, strangers: 0, error: err.message }
      }))
    }
    const sum = (key) => rounds.reduce((total, round) => total + round[key], 0)
    result.failover = { ...spread(rounds.flatMap((round) => round.times)), rounds: failovers, missing: sum('missing'), strangers: sum('strangers'), boundMs: leaseMs + renewMs, errors: rounds.map((round) => round.error).filter(Boolean) }
  }
  result.load = { before: loadBefore, after: loadavg()[0] }
  loopDelay.disable()
  result.eventLoopDelayMs = { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 }
  result.warnings = Object.fromEntries(warnings)
  if (warnings.size > 0) process.stderr.write(`the instances warned: ${JSON.stringify(result.warnings)}\n`)
  for (const instance of instances) {
    for (const subscription of instance.subscriptions) subscription.unsubscribe()
  }
  await Promise.all(instances.map((instance) => instance.lifecycle.close()))
  for (const instance of instances) instance.client.disconnect()
  redis.stop()
  return result
}

// ---- report ------------------------------------------------------------------------------------------------

const fmt = (value) => Math.round(value).toLocaleString('en-US')
const kib = (bytes) => bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`
const ms = (value) => value === Infinity ? 'timeout' : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`
const times = (s) => s ? `${ms(s.median)} / ${ms(s.max)}` : 'n/a'

function report (results) {
  const redisKind = results[0]?.redis
  console.log(`${redisKind}; leaseMs ${leaseMs} (renewal every ${renewMs} ms); one subscriber per agent per instance (disjoint)`)
  if (phases.has('costs')) {
    console.log(`\nCosts: medians of ${changes} demand changes and of 3 bursts of ${sampleBurst} samples; idle over ${idleMs} ms`)
    console.log('| N x A | demand change: commands (in Redis / sent), bytes in+out | idle: commands/s (in Redis / sent), bytes/s, Redis CPU | a sample: commands in Redis, Redis CPU | bytes out of Redis per sample: 1 instance watches / all N watch |')
    console.log('|---|---|---|---|---|')
    for (const r of results) {
      console.log(`| ${r.instances} x ${r.agentsPerInstance} | ${fmt(r.change.calls)} / ${fmt(r.change.top)}, ${kib(r.change.bytes)} | ${fmt(r.idle.calls)} / ${r.idle.top.toFixed(1)}, ${kib(r.idle.bytes)}/s, ${r.idle.cpuMsPerSecond.toFixed(1)} ms/s | ${r.sample.disjoint.calls.toFixed(1)}, ${r.sample.disjoint.cpuUs.toFixed(1)} µs | ${fmt(r.sample.disjoint.outBytes)} B / ${fmt(r.sample.all.outBytes)} B |`)
    }
  }
  if (phases.has('agreement') || phases.has('failover')) {
    console.log(`\nAgreement (median / max of ${changes} changes) and failover (median / max over the agents of ${failovers} SIGKILLed owner(s) of A agents each)`)
    console.log('| N x A | demand change → owner\'s status | demand change → a third watcher\'s status | owner\'s stream change → watcher\'s status (after the owner\'s) | SIGKILL of an owner → first sample of the new owner (bound: leaseMs + one renewal) | load (1 min) before / after | this process\'s event loop delay: p99 / max |')
    console.log('|---|---|---|---|---|---|---|')
    for (const r of results) {
      const failover = r.failover ? `${r.failover.count ? times(r.failover) : 'failed'} (${ms(r.failover.boundMs)})${r.failover.missing ? `, ${r.failover.missing} agents not back` : ''}${r.failover.strangers ? `, ${r.failover.strangers} taken by another instance` : ''}` : 'n/a'
      console.log(`| ${r.instances} x ${r.agentsPerInstance} | ${times(r.agreement?.demand.toOwner)} | ${times(r.agreement?.demand.toThird)} | ${times(r.agreement?.stream.afterOwner)} | ${failover} | ${r.load.before.toFixed(2)} / ${r.load.after.toFixed(2)} | ${ms(r.eventLoopDelayMs.p99)} / ${ms(r.eventLoopDelayMs.max)} |`)
    }
  }
}

const results = []
for (const [n, a] of sizes) {
  process.stderr.write(`${new Date().toISOString()} measuring ${n} instances x ${a} agents on ${onCluster ? 'a Redis Cluster' : 'one redis-server'} (load ${loadavg()[0].toFixed(2)})...\n`)
  results.push(await measure(n, a))
  if (args.json) writeFileSync(String(args.json), JSON.stringify(results, null, 2))
}
report(results)
process.exit(0)
