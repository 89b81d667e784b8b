// What the per-agent cluster design costs Redis (issue 14), measured on a real redis-server with Redis's own
// counters: a demand change, the channels a sample goes to, and the keys an idle agent leaves behind.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { StreamLifecycle } from '../lib/index.js'
import { redisCoordinator } from '../lib/redis/index.js'
import { redisSkip, startRedis, type RedisServer } from './helpers/redis-server.js'
import { waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

const skip = redisSkip()
// Long: no renewal lands in a measured window, and a stall of this process hands nothing over.
const quietLeaseMs = 60_000

interface Member { lifecycle: StreamLifecycle, adapter: TestAdapter, redis: Redis }

async function startMembers (t: Test, server: RedisServer, n: number, keyPrefix: string, leaseMs: number): Promise<Member[]> {
  const members: Member[] = []
  for (let index = 0; index < n; index++) {
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
    redis.on('error', () => {})
    const adapter = new TestAdapter({ taskPrefix: `i${index}:` })
    const lifecycle = new StreamLifecycle({ adapter, stopDelayMs: 100, coordinator: redisCoordinator({ redis, keyPrefix, leaseMs, instanceId: `i${index}` }) })
    await lifecycle.ready()
    members.push({ lifecycle, adapter, redis })
  }
  t.teardown(async () => {
    await Promise.all(members.map((member) => member.lifecycle.close()))
    for (const member of members) member.redis.disconnect()
  })
  return members
}

interface Counters { calls: number, bytes: number, byCommand?: Record<string, number> }

/** Commands Redis ran (inside scripts too; INFO excluded) and bytes in and out. */
async function counters (probe: Redis): Promise<Counters> {
  const [stats, commands] = await Promise.all([probe.info('stats'), probe.info('commandstats')])
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(stats)![1])
  let calls = 0
  const byCommand: Record<string, number> = {}
  for (const match of commands.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] === 'info') continue
    calls += Number(match[2])
    byCommand[match[1]!] = Number(match[2])
  }
  return { calls, bytes: field('total_net_input_bytes') + field('total_net_output_bytes'), byCommand }
}

/** What `during` costs Redis, less what reading the counters costs. */
async function cost (probe: Redis, during: () => Promise<void>): Promise<Counters> {
  const a = await counters(probe)
  const b = await counters(probe)
  const reading = { calls: b.calls - a.calls, bytes: b.bytes - a.bytes }
  const before = await counters(probe)
  await during()
  const after = await counters(probe)
  const byCommand: Record<string, number> = {}
  for (const [name, calls] of Object.entries(after.byCommand!)) {
    const spent = calls - (before.byCommand![name] ?? 0) - ((b.byCommand![name] ?? 0) - (a.byCommand![name] ?? 0))
    if (spent !== 0) byCommand[name] = spent
  }
  return { calls: after.calls - before.calls - reading.calls, bytes: after.bytes - before.bytes - reading.bytes, byCommand }
}

const noop = () => {}

t.test('a demand change costs at most 10 commands and 4 KiB, whatever the number of instances and agents', { skip }, async (t) => {
  const server = await startRedis(t)
  const probe = new Redis(server.url)
  t.teardown(() => probe.disconnect())
  const measured: Record<number, { join: Counters, leave: Counters }> = {}
  for (const n of [2, 8]) {
    const members = await startMembers(t, server, n, `cost${n}:`, quietLeaseMs)
    members.forEach((member, index) => {
      for (let a = 0; a < 50; a++) member.lifecycle.subscribe(`n${n}-${index}-${a}`, { intervalSeconds: 1, onSample: noop })
    })
    await waitFor(() => members.every((member) => member.adapter.liveTasks.size === 50), `${n} x 50 agents streaming`, 20_000)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const agentId = `n${n}-0-0`
    const [owner, joiner] = members as [Member, Member]
    let subscription: { unsubscribe (): void } | undefined
    const join = await cost(probe, async () => {
      subscription = joiner.lifecycle.subscribe(agentId, { intervalSeconds: 2, onSample: noop })
      await waitFor(() => owner.lifecycle.status(agentId).subscribers === 2, 'the owner to count the new subscriber', 5000)
      await new Promise((resolve) => setTimeout(resolve, 100))
    })
    const leave = await cost(probe, async () => {
      subscription!.unsubscribe()
      await waitFor(() => owner.lifecycle.status(agentId).subscribers === 1, 'the owner to count one subscriber', 5000)
      await new Promise((resolve) => setTimeout(resolve, 100))
    })
    t.comment(`${n} instances x 50 agents: a join costs ${join.calls} commands and ${join.bytes} bytes, a leave ${leave.calls} commands and ${leave.bytes} bytes (join ${JSON.stringify(join.byCommand)}, leave ${JSON.stringify(leave.byCommand)})`)
    for (const [what, spent] of [['join', join], ['leave', leave]] as const) {
      t.ok(spent.calls <= 10, `${n} instances: a ${what} costs at most 10 commands (${spent.calls})`)
      t.ok(spent.bytes <= 4096, `${n} instances: a ${what} costs at most 4 KiB in and out (${spent.bytes})`)
    }
    t.equal(owner.lifecycle.status(agentId).requestedIntervals.length, 1)
    measured[n] = { join, leave }
  }
  t.ok(measured[8]!.join.calls <= measured[2]!.join.calls, 'a join costs no more commands at 8 instances than at 2')
  t.ok(measured[8]!.leave.calls <= measured[2]!.leave.calls, 'a leave costs no more commands at 8 instances than at 2')
})

t.test('a sample reaches only the instances that watch its agent', { skip }, async (t) => {
  const server = await startRedis(t)
  const probe = new Redis(server.url)
  t.teardown(() => probe.disconnect())
  const members = await startMembers(t, server, 3, 'watch:', quietLeaseMs)
  const [a, b, c] = members as [Member, Member, Member]
  const channel = 'watch:{w}:s'
  const got = { a: 0, b: 0, c: 0 }
  // a's client first, so that a owns the agent (an owner listens to its agent's channel, for demand changes).
  a.lifecycle.subscribe('w', { intervalSeconds: 1, onSample: () => got.a++ })
  await waitFor(() => a.adapter.liveTasks.size === 1, 'a streams w', 5000)
  const onB = b.lifecycle.subscribe('w', { intervalSeconds: 1, onSample: () => got.b++ })
  const numsub = async () => Number((await probe.pubsub('NUMSUB', channel))[1])
  await waitFor(async () => await numsub() === 2 && b.lifecycle.status('w').subscribers === 2, 'two instances listening', 5000)
  t.equal(b.adapter.liveTasks.size, 0, 'one task, on a')
  t.equal(c.lifecycle.status('w').subscribers, 0)
  const ownerAdapter = a.adapter
  ownerAdapter.push('w', { n: 1 })
  await waitFor(() => got.a === 1 && got.b === 1, 'the sample on both watching instances', 5000)
  t.equal(got.c, 0, 'nothing on the instance that does not watch the agent')
  t.equal(c.lifecycle.lastEventId('w'), 0, 'and it keeps no history of it')
  t.same((await probe.pubsub('CHANNELS', 'watch:{*')).sort(), [channel], 'only the agent channel exists')

  onB.unsubscribe()
  await waitFor(async () => await numsub() === 1, 'one instance listening after the other one\'s subscriber left', 5000)
  ownerAdapter.push('w', { n: 2 })
  await waitFor(() => got.a === 2, 'the next sample on a', 5000)
  t.equal(got.b, 1, 'no sample for the instance that has no subscriber of the agent any more')
})

t.test('an agent\'s keys expire once it has been idle for a while', { skip }, async (t) => {
  const server = await startRedis(t)
  const probe = new Redis(server.url)
  t.teardown(() => probe.disconnect())
  // Short on purpose: the keys of an idle agent live a few leases.
  const leaseMs = 600
  const members = await startMembers(t, server, 2, 'idle:', leaseMs)
  const [a, b] = members as [Member, Member]
  const onA = a.lifecycle.subscribe('gone', { intervalSeconds: 1, onSample: noop })
  const onB = b.lifecycle.subscribe('gone', { intervalSeconds: 1, onSample: noop })
  await waitFor(() => a.adapter.liveTasks.size + b.adapter.liveTasks.size === 1, 'one task', 5000)
  const keys = () => probe.keys('idle:{gone}*')
  t.ok((await keys()).length >= 2, `the agent has keys while it streams: ${(await keys()).join(', ')}`)
  onA.unsubscribe()
  onB.unsubscribe()
  await waitFor(() => a.adapter.liveTasks.size + b.adapter.liveTasks.size === 0, 'the task stopped', 5000)
  const idleAt = Date.now()
  await waitFor(async () => (await keys()).length === 0, 'no key of the idle agent left', leaseMs * 10)
  t.comment(`the idle agent's keys were gone ${Date.now() - idleAt} ms after its stream stopped`)
  t.same(await probe.pubsub('CHANNELS', 'idle:{*'), [], 'and no instance listens to its channel')
})
