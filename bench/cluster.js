// Cluster cost benchmark: `npm run bench:cluster` (run `npm run build` first: it uses dist/ through the package's
// self-reference, or the directory in BENCH_AGENT_SSE_DIR, e.g. a clone of an older commit).
// Options: --sizes=2x100,8x100 (instances x agents per instance), --lease-ms=10000, --idle-ms=10000,
//          --changes=6, --samples=200, --json=FILE
//
// N cluster instances (StreamLifecycle + redisCoordinator, no HTTP) run in this process on one redis-server that the
// benchmark starts on a free port. Each instance has A agents of its own with one subscriber each (disjoint), so
// every agent is owned by the instance that watches it. Measured from Redis's own counters (INFO stats and
// INFO commandstats, whose own cost is subtracted):
//   - a demand change: one subscriber joining (then leaving) an agent that is already streaming, on another
//     instance than its owner: commands and bytes (in + out of Redis) within a second of it, the median over
//     several changes (renewals are periodic: most windows hold none);
//   - idle: commands/s and bytes/s with nothing changing (renewals only), over a whole lease (three renewals);
//   - a sample: bytes out of Redis per sample the owner publishes (bursts of samples of one agent, the median).
// Commands are counted twice: "in Redis" sums INFO commandstats (commands run inside scripts included, INFO
// excluded), "sent" counts what the instances' ioredis clients sent (a script call is one).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { Redis } from 'ioredis'

const args = Object.fromEntries(process.argv.slice(2).map((arg) => {
  const [key, value] = arg.replace(/^--/, '').split('=')
  return [key, value ?? true]
}))
const sizes = String(args.sizes ?? '2x100,8x100').split(',').map((size) => size.split('x').map(Number))
const leaseMs = Number(args['lease-ms'] ?? 10000)
const idleMs = Number(args['idle-ms'] ?? leaseMs)
const changes = Number(args.changes ?? 6)
const sampleBurst = Number(args.samples ?? 200)

const base = process.env.BENCH_AGENT_SSE_DIR
const { StreamLifecycle } = await import(base ? pathToFileURL(path.join(base, 'dist/esm/index.js')).href : 'fastify-agent-sse')
const { redisCoordinator } = await import(base ? pathToFileURL(path.join(base, 'dist/esm/redis/index.js')).href : 'fastify-agent-sse/redis')

// What the instances send, counted where ioredis sends it (pipelines and subscriptions included).
let sent = 0
const sendCommand = Redis.prototype.sendCommand
Redis.prototype.sendCommand = function (...args) {
  if (!this.benchProbe) sent++
  return sendCommand.apply(this, args)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

async function startRedis () {
  const port = await freePort()
  const child = spawn(process.env.REDIS_SERVER_BIN ?? 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning', '--dir', tmpdir()], { stdio: 'ignore' })
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => 50 })
  probe.benchProbe = true
  probe.on('error', () => {})
  await probe.connect().catch(() => {})
  while (probe.status !== 'ready') await sleep(20)
  return { port, probe, stop: () => { probe.disconnect(); child.kill('SIGKILL') } }
}

/** Redis's counters: commands (inside scripts included) and bytes, INFO itself excluded. */
async function counters (probe) {
  const [stats, commands, cpu] = await Promise.all([probe.info('stats'), probe.info('commandstats'), probe.info('cpu')])
  const seconds = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)[1])
  const field = (name) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(stats)[1])
  let calls = 0
  const byCommand = {}
  for (const match of commands.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] === 'info') continue
    calls += Number(match[2])
    byCommand[match[1]] = Number(match[2])
  }
  return { calls, byCommand, top: sent, in: field('total_net_input_bytes'), out: field('total_net_output_bytes'), cpuMs: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000 }
}

function delta (after, before) {
  const byCommand = {}
  for (const [name, calls] of Object.entries(after.byCommand)) {
    const d = calls - (before.byCommand[name] ?? 0)
    if (d > 0) byCommand[name] = d
  }
  return { calls: after.calls - before.calls, top: after.top - before.top, in: after.in - before.in, out: after.out - before.out, cpuMs: after.cpuMs - before.cpuMs, byCommand }
}

function minus (a, b, scale = 1) {
  return { calls: a.calls - b.calls * scale, top: a.top - b.top * scale, in: a.in - b.in * scale, out: a.out - b.out * scale, cpuMs: a.cpuMs - b.cpuMs * scale }
}

/** What two back-to-back reads of the counters cost by themselves (their requests and replies). */
async function probeCost (probe) {
  const samples = []
  for (let i = 0; i < 5; i++) {
    const a = await counters(probe)
    const b = await counters(probe)
    samples.push(delta(b, a))
  }
  samples.sort((x, y) => x.out - y.out)
  return samples[2]
}

function benchAdapter () {
  const tasks = new Map() // agentId -> { taskId, sink }
  let sequence = 0
  return {
    tasks,
    async startMetricsStreaming (agentId, _options, sink) {
      const taskId = `t${++sequence}`
      tasks.set(agentId, { taskId, sink })
      return { taskId }
    },
    async stopMetricsStreaming (agentId, taskId) {
      if (tasks.get(agentId)?.taskId === taskId) tasks.delete(agentId)
    },
    async getCurrentMetrics () { return {} }
  }
}

async function until (check, what, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function measure (n, agentsPerInstance) {
  const redis = await startRedis()
  const instances = []
  for (let index = 0; index < n; index++) {
    const client = new Redis(redis.port, '127.0.0.1')
    client.on('error', () => {})
    const adapter = benchAdapter()
    const lifecycle = new StreamLifecycle({ adapter, stopDelayMs: 1000, coordinator: redisCoordinator({ redis: client, keyPrefix: 'bench:', leaseMs, instanceId: `i${index}` }) })
    await lifecycle.ready()
    instances.push({ client, adapter, lifecycle, subscriptions: [] })
  }
  const received = new Map() // instance index -> samples received by its subscribers
  instances.forEach((instance, index) => {
    received.set(index, 0)
    for (let a = 0; a < agentsPerInstance; a++) {
      instance.subscriptions.push(instance.lifecycle.subscribe(`agent-${index}-${a}`, { intervalSeconds: 1, onSample: () => received.set(index, received.get(index) + 1) }))
    }
  })
  await until(() => instances.every((instance) => instance.adapter.tasks.size === agentsPerInstance), 'every agent to stream on its instance')
  await sleep(Math.min(leaseMs, 3000)) // let the joins settle
  const overhead = await probeCost(redis.probe)

  // Idle: renewals only.
  const idleStart = await counters(redis.probe)
  const idleStartedAt = Date.now()
  await sleep(idleMs)
  const idleEnd = await counters(redis.probe)
  const idleSeconds = (Date.now() - idleStartedAt) / 1000
  const idle = minus(delta(idleEnd, idleStart), overhead)
  const idleRate = { calls: idle.calls / idleSeconds, top: idle.top / idleSeconds, in: idle.in / idleSeconds, out: idle.out / idleSeconds, cpuMs: idle.cpuMs / idleSeconds }

  // Demand changes: a subscriber of instance 0's agent joins on instance 1 (or leaves), settles, is measured.
  const settleMs = 1000
  const perChange = []
  const target = 'agent-0-0'
  const joiner = instances[1 % n]
  let extra = null
  for (let i = 0; i < changes; i++) {
    const before = await counters(redis.probe)
    if (extra === null) extra = joiner.lifecycle.subscribe(target, { intervalSeconds: 1, onSample () {} })
    else { extra.unsubscribe(); extra = null }
    await sleep(settleMs)
    const after = await counters(redis.probe)
    perChange.push(minus(delta(after, before), overhead))
  }
  extra?.unsubscribe()
  const change = median(perChange)

  // Samples: bursts of one agent's samples, pushed by its owner.
  await sleep(500)
  const owner = instances.find((instance) => instance.adapter.tasks.has(target))
  const task = owner.adapter.tasks.get(target)
  const payload = { cpu: 0.5, memory: 123456789, disk: 0.25, net: { rx: 1234, tx: 5678 }, note: 'x'.repeat(150) }
  const perBurst = []
  for (let burst = 0; burst < 3; burst++) {
    const gotBefore = received.get(0)
    const sampleStart = await counters(redis.probe)
    for (let i = 0; i < sampleBurst; i++) task.sink.push({ ...payload, seq: i })
    await until(() => received.get(0) - gotBefore >= sampleBurst, 'the burst to arrive', 20000).catch(() => {})
    await sleep(100)
    perBurst.push(minus(delta(await counters(redis.probe), sampleStart), overhead))
  }
  const sample = median(perBurst)

  for (const instance of instances) {
    for (const subscription of instance.subscriptions) subscription.unsubscribe()
  }
  await Promise.all(instances.map((instance) => instance.lifecycle.close()))
  for (const instance of instances) instance.client.disconnect()
  redis.stop()
  return {
    instances: n,
    agentsPerInstance,
    change: { calls: change.calls, top: change.top, bytes: change.in + change.out },
    idle: { calls: idleRate.calls, top: idleRate.top, bytes: idleRate.in + idleRate.out, cpuMsPerSecond: idleRate.cpuMs },
    sample: { outBytes: sample.out / sampleBurst, calls: sample.calls / sampleBurst }
  }
}

function median (list) {
  const pick = (key) => {
    const values = list.map((entry) => entry[key]).sort((a, b) => a - b)
    return values[Math.floor(values.length / 2)]
  }
  return { calls: pick('calls'), top: pick('top'), in: pick('in'), out: pick('out') }
}

const fmt = (value) => Math.round(value).toLocaleString('en-US')
const kib = (bytes) => bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`

const results = []
for (const [n, a] of sizes) {
  process.stderr.write(`measuring ${n} instances x ${a} agents...\n`)
  results.push(await measure(n, a))
}
console.log(`leaseMs ${leaseMs}; one subscriber per agent per instance (disjoint); medians of ${changes} changes; ${sampleBurst}-sample burst`)
console.log('| N x A | demand change: commands (in Redis / sent) | demand change: bytes in+out | idle commands/s (in Redis / sent) | idle bytes/s | idle Redis CPU | bytes out per sample |')
console.log('|---|---|---|---|---|---|---|')
for (const r of results) {
  console.log(`| ${r.instances} x ${r.agentsPerInstance} | ${fmt(r.change.calls)} / ${fmt(r.change.top)} | ${kib(r.change.bytes)} | ${r.idle.calls.toFixed(1)} / ${r.idle.top.toFixed(1)} | ${kib(r.idle.bytes)} | ${r.idle.cpuMsPerSecond.toFixed(1)} ms/s | ${fmt(r.sample.outBytes)} B |`)
}
if (args.json) writeFileSync(String(args.json), JSON.stringify(results, null, 2))
process.exit(0)
