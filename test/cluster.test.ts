// Cluster mode with several instances in this process (each its own Fastify app, ioredis
// connections and adapter) on a real redis-server. Process deaths (SIGKILL, SIGSTOP) are in
// cluster-processes.test.ts; these cover the semantics and, being in-process, lib/redis coverage.
// The same scenarios run against a real 3-master Redis Cluster from cluster.redis-cluster.test.ts
// (AGENT_SSE_REDIS_TARGET=cluster): "Redis down" is then every node down, "data lost" every node's.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { redisCoordinator } from '../lib/redis/index.js'
import agentSse from '../lib/index.js'
import Fastify from 'fastify'
import { CLUSTER_TEST_LEASE_MS, liveTasks, redisTargetKind, redisTargetSkip, startClusterApp, publishAs, startRedisTarget, starts, stops, targetSuffix, type ClusterApp, type RedisTarget } from './helpers/cluster-app.js'
import { waitFor, type SseStream } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

const target = redisTargetKind()
const skip = redisTargetSkip(target)
const on = targetSuffix(target)
// Long enough that a stall of this process (every instance lives in it) hands nothing over: the
// tests that want a handover make one.
const leaseMs = CLUSTER_TEST_LEASE_MS
const renewMs = leaseMs / 3
/** For conditions that come within a renewal or two: polled, so the bound only catches what never comes. */
const waitMs = renewMs * 2 + 8000
/** Added to the time bounds that are asserted: timers run late on a busy machine. */
const slackMs = 1000
// About 35 s alone; the margin is for a machine at half this one's speed.
t.setTimeout(180_000)
let prefixes = 0

async function cluster (t: Test, n: number, redis: RedisTarget, options: { stopDelayMs?: number, leaseMs?: number } = {}): Promise<ClusterApp[]> {
  const keyPrefix = `c${++prefixes}:`
  const ids = ['a', 'b', 'c'].slice(0, n)
  return Promise.all(ids.map((instanceId) => startClusterApp(t, { redis, instanceId, keyPrefix, leaseMs: options.leaseMs ?? leaseMs, stopDelayMs: options.stopDelayMs })))
}

/** The instance that owns the agent, from the status every instance reports. */
async function ownerOf (apps: ClusterApp[], agentId: string): Promise<ClusterApp> {
  let owner: ClusterApp | undefined
  await waitFor(async () => {
    const status = await apps[0]!.status(agentId)
    owner = apps.find((app) => app.id === status.owner && status.state === 'active')
    return owner !== undefined
  }, `an active owner of ${agentId}`, waitMs)
  return owner!
}

/** Instances agree within a renewal period: polls the instance's status until it has these fields. */
async function statusBecomes (t: Test, app: ClusterApp, agentId: string, fields: Record<string, unknown>) {
  let status: Record<string, unknown> = {}
  const same = () => Object.entries(fields).every(([key, value]) => JSON.stringify(status[key]) === JSON.stringify(value))
  await waitFor(async () => { status = await app.status(agentId); return same() }, `status of ${agentId} on ${app.id} to have ${JSON.stringify(fields)}`, waitMs).catch(() => {})
  t.match(status, fields, `status on ${app.id}: ${JSON.stringify(fields)}`)
}

const metrics = (stream: SseStream) => stream.next((event) => event.event === 'metrics', `metrics on ${stream.url}`)
/**
 * Whether `next` is the event id that follows `previous`: the next integer on one redis-server (one INCR
 * counter); on a Redis Cluster any larger one (each agent's ids follow its master's clock, 64,000 a second),
 * but not a jump of more than ten minutes of that clock (a forged id would be one).
 */
const follows = (previous: string | number | undefined, next: string | number | undefined): boolean =>
  target === 'cluster'
    ? Number(next) > Number(previous) && Number(next) - Number(previous) < 64_000 * 600
    : Number(next) === Number(previous) + 1
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test(`cluster mode over Redis (in-process instances)${on}`, { skip }, async (t) => {
  const redis = await startRedisTarget(t, target)

  t.test('clients on two instances share one agent stream; the stop comes after the last client anywhere leaves', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const onA = await a.sse('/agents/x/metrics/stream')
    const onB = await b.sse('/agents/x/metrics/stream')
    const owner = await ownerOf(apps, 'x')
    t.equal(starts(apps, 'x'), 1, 'one start in the cluster')
    // Both instances count both clients, within a renewal period.
    await waitFor(async () => (await a.status('x')).sse_clients === 2 && (await b.status('x')).sse_clients === 2, 'both instances to count 2 clients', waitMs)
    // Instances agree within one renewal period (an instance that joins while the owner describes the
    // stream may read the description just before it changes, and hears of the change at the next renewal).
    let [statusA, statusB] = [await a.status('x'), await b.status('x')]
    await waitFor(async () => {
      [statusA, statusB] = [await a.status('x'), await b.status('x')]
      return JSON.stringify(statusA) === JSON.stringify(statusB)
    }, 'both instances to give the same status', renewMs * 2 + slackMs)
    t.same(statusA, statusB, 'status is the same on every instance')
    t.match(statusA, { streaming_active: true, state: 'active', owner: owner.id, task_id: `${owner.id}:task-1`, requested_intervals: [1, 1] })
    t.same((await b.json('/streams')).body.streams.map((s: { agent_id: string }) => s.agent_id), ['x'], 'GET /streams on a non-owner lists the agent')

    owner.adapter.push('x', { cpu: 1 })
    owner.adapter.push('x', { cpu: 2 })
    const seen = await Promise.all([onA, onB].map(async (stream) => [await metrics(stream), await metrics(stream)]))
    for (const [first, second] of seen) {
      t.same([JSON.parse(first!.data), JSON.parse(second!.data)], [{ cpu: 1 }, { cpu: 2 }])
      t.ok(follows(first!.id, second!.id), `consecutive ids (${first!.id}, ${second!.id})`)
    }
    t.same(seen[0]!.map((event) => event.id), seen[1]!.map((event) => event.id), 'the same ids on both instances')

    onA.close()
    await sleep(200 + renewMs * 3)
    t.equal(stops(apps, 'x'), 0, 'no stop while a client remains on the other instance')
    onB.close()
    await waitFor(() => stops(apps, 'x') === 1, 'the stop', waitMs)
    await waitFor(async () => (await a.status('x')).state === 'idle' && (await b.status('x')).state === 'idle', 'idle everywhere', waitMs)
    t.match(await b.status('x'), { streaming_active: false, owner: null, sse_clients: 0, task_id: null })
    await sleep(renewMs * 2)
    t.equal(starts(apps, 'x'), 1)
    t.equal(stops(apps, 'x'), 1)
    t.same(liveTasks(apps), [])
  })

  t.test('a client joining or leaving on one instance shows at once on every instance that watches the agent, not at its next renewal', async (t) => {
    // A 60 s lease: renewals every 20 s, so a change seen within a few seconds came on the agent's channel.
    const slowLeaseMs = 60_000
    const apps = await cluster(t, 3, redis, { leaseMs: slowLeaseMs })
    const [a, b, c] = apps as [ClusterApp, ClusterApp, ClusterApp]
    const onA = await a.sse('/agents/w/metrics/stream')
    await waitFor(async () => (await a.status('w')).state === 'active', 'a owns w', waitMs)
    const onC = await c.sse('/agents/w/metrics/stream')
    await waitFor(async () => (await a.status('w')).sse_clients === 2, 'the owner to count c\'s client', waitMs)
    await waitFor(async () => (await c.status('w')).sse_clients === 2, 'c to count the owner\'s client', waitMs)
    const bound = slowLeaseMs / 3 / 4
    const joinedAt = Date.now()
    const onB = await b.sse('/agents/w/metrics/stream')
    await waitFor(async () => (await c.status('w')).sse_clients === 3 && (await a.status('w')).sse_clients === 3, 'the owner and c to count b\'s client', bound)
    t.comment(`timing: b's client counted on the owner and on c ${Date.now() - joinedAt} ms after it joined (renewals every ${slowLeaseMs / 3} ms)`)
    onB.close()
    const leftAt = Date.now()
    await waitFor(async () => (await c.status('w')).sse_clients === 2 && (await a.status('w')).sse_clients === 2, 'the owner and c to see b\'s client leave', bound)
    t.comment(`timing: b's client gone on the owner and on c ${Date.now() - leftAt} ms after it left`)
    t.match(await c.status('w'), { owner: 'a', state: 'active', requested_intervals: [1, 1] })
    onA.close()
    onC.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })

  t.test('an instance with no part in an agent answers its status and GET /streams right the first time', async (t) => {
    const apps = await cluster(t, 3, redis)
    const [a, , c] = apps as [ClusterApp, ClusterApp, ClusterApp]
    const client = await a.sse('/agents/first-ask/metrics/stream')
    t.teardown(() => client.close())
    const owner = await ownerOf(apps, 'first-ask')
    await waitFor(async () => (await owner.status('first-ask')).state === 'active', 'the stream to be active on its owner', waitMs)
    // c has no client, hold or stream of the agent, and was never asked about it: its very first answers.
    const [status, list] = [await c.status('first-ask'), (await c.json('/streams')).body]
    t.match(status, { agent_id: 'first-ask', streaming_active: true, state: 'active', owner: owner.id, sse_clients: 1 }, 'the first status answer')
    t.same(list.streams.map((s: { agent_id: string }) => s.agent_id), ['first-ask'], 'the first GET /streams answer')
  })

  t.test('the debounce is cluster-wide: a client on another instance within stopDelayMs keeps the stream', async (t) => {
    // Long enough that the second client arrives within it even if this process stalls for a second.
    const stopDelayMs = 2000
    const apps = await cluster(t, 2, redis, { stopDelayMs })
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const first = await a.sse('/agents/d/metrics/stream')
    await ownerOf(apps, 'd')
    first.close()
    await waitFor(async () => (await b.status('d')).state === 'lingering', 'lingering seen from b', waitMs)
    const second = await b.sse('/agents/d/metrics/stream')
    await waitFor(async () => (await a.status('d')).state === 'active', 'active again', waitMs)
    await sleep(stopDelayMs + 200)
    t.equal(starts(apps, 'd'), 1, 'no second start')
    t.equal(stops(apps, 'd'), 0, 'no stop')
    second.close()
    await waitFor(() => stops(apps, 'd') === 1, 'the stop after the window', waitMs)
    t.same(liveTasks(apps), [])
  })

  t.test('per-client intervals across instances: the stream runs at the smallest, each instance down-samples', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const fast = await a.sse('/agents/i/metrics/stream?interval_seconds=1')
    const slow = await b.sse('/agents/i/metrics/stream?interval_seconds=3')
    const owner = await ownerOf(apps, 'i')
    await statusBecomes(t, a, 'i', { interval_seconds: 1, requested_intervals: [1, 3] })
    await statusBecomes(t, b, 'i', { interval_seconds: 1, requested_intervals: [1, 3] })
    for (let n = 1; n <= 6; n++) owner.adapter.push('i', { n })
    await waitFor(() => fast.events.filter((e) => e.event === 'metrics').length === 6, 'six samples on the fast client', waitMs)
    await waitFor(() => slow.events.filter((e) => e.event === 'metrics').length === 2, 'two on the slow one', waitMs)
    t.same(slow.events.filter((e) => e.event === 'metrics').map((e) => JSON.parse(e.data).n), [1, 4], 'every 3rd sample')
    fast.close()
    // Without changeInterval the owner re-tunes by a restart at the slower interval.
    await waitFor(() => apps.some((app) => app.adapter.startCalls.some((call) => call.intervalSeconds === 3)), 'a start at 3 s', waitMs)
    await waitFor(async () => (await b.status('i')).interval_seconds === 3, 'status shows 3 s', waitMs)
    slow.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })

  t.test('an in-place re-tune (changeInterval) shows in the status of every instance', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const retunes = apps.map((app) => app.adapter.enableChangeInterval())
    const slow = await a.sse('/agents/rt/metrics/stream?interval_seconds=5')
    const owner = await ownerOf(apps, 'rt')
    await statusBecomes(t, b, 'rt', { interval_seconds: 5 })
    const fast = await b.sse('/agents/rt/metrics/stream?interval_seconds=2')
    await waitFor(() => retunes.flat().length === 1, 'the owner re-tunes', waitMs)
    // The same task, re-tuned in place (no restart), and both instances say so.
    await statusBecomes(t, a, 'rt', { interval_seconds: 2, task_id: owner.adapter.startCalls[0]!.taskId, requested_intervals: [2, 5] })
    await statusBecomes(t, b, 'rt', { interval_seconds: 2, task_id: owner.adapter.startCalls[0]!.taskId, requested_intervals: [2, 5] })
    t.equal(starts(apps, 'rt'), 1, 'no restart')
    slow.close()
    fast.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })

  t.test('a manual hold is one flag for the cluster: set on one instance, released on another', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const started = await a.json('/agents/h/metrics/streaming/start', 'POST', { interval_seconds: 2 })
    t.equal(started.statusCode, 200)
    t.match(started.body, { streaming_active: true, state: 'active', manual_hold: true, owner: 'a', interval_seconds: 2 })
    await statusBecomes(t, b, 'h', { manual_hold: true, state: 'active', task_id: 'a:task-1', requested_intervals: [2] })
    // A start on the other instance is the same hold: nothing restarts.
    t.match((await b.json('/agents/h/metrics/streaming/start', 'POST', { interval_seconds: 2 })).body, { state: 'active', task_id: 'a:task-1' })
    const released = await b.json('/agents/h/metrics/streaming/stop', 'POST')
    t.equal(released.statusCode, 200)
    t.equal(released.body.manual_hold, false, 'released everywhere by a stop on b')
    await waitFor(() => stops(apps, 'h') === 1, 'the stop after stopDelayMs', waitMs)
    t.equal(starts(apps, 'h'), 1)
    await statusBecomes(t, a, 'h', { manual_hold: false, streaming_active: false })
  })

  t.test('a hold lives under the lease of the instance that set it', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    t.equal((await b.json('/agents/g/metrics/streaming/start', 'POST')).statusCode, 200)
    await waitFor(async () => (await a.status('g')).manual_hold, 'a sees the hold', waitMs)
    // b is cut off from Redis for good: its instance lease runs out and its hold with it.
    b.redis.disconnect(false)
    const since = Date.now()
    await waitFor(async () => !(await a.status('g')).manual_hold, 'the hold gone from a', leaseMs + waitMs)
    t.ok(Date.now() - since <= leaseMs + renewMs * 2 + slackMs, `hold gone after ${Date.now() - since} ms`)
    await waitFor(() => liveTasks(apps, 'g').length === 0, 'the held stream stopped', waitMs)
  })

  t.test('cancel from any instance: 200 once the owner stopped, clients everywhere get end: cancelled', async (t) => {
    const apps = await cluster(t, 3, redis)
    const [a, b, c] = apps as [ClusterApp, ClusterApp, ClusterApp]
    const clients = [await a.sse('/agents/k/metrics/stream'), await b.sse('/agents/k/metrics/stream'), await c.sse('/agents/k/metrics/stream')]
    t.equal((await b.json('/agents/k/metrics/streaming/start', 'POST')).statusCode, 200)
    const owner = await ownerOf(apps, 'k')
    const other = apps.find((app) => app !== owner)!
    await waitFor(async () => (await other.status('k')).task_id !== null, 'the task id everywhere', waitMs)
    const taskId = (await other.status('k')).task_id
    const cancelled = await other.json(`/tasks/${encodeURIComponent(taskId)}/cancel`, 'POST')
    t.equal(cancelled.statusCode, 200)
    t.equal(stops(apps, 'k'), 1, 'the owner had stopped the task when the cancel answered')
    for (const client of clients) {
      const end = await client.next((event) => event.event === 'end', `end on ${client.url} (owner ${owner.id}, cancelled on ${other.id}): ${JSON.stringify(client.events)} ${JSON.stringify(apps.map((app) => [app.id, app.logs.filter((line) => line.level >= 40 || /cancel|own|releas/i.test(line.msg)).map((line) => line.msg)]))}`)
      t.same(JSON.parse(end.data), { reason: 'cancelled' })
    }
    await waitFor(async () => (await a.status('k')).manual_hold === false && (await c.status('k')).state === 'idle', 'hold cleared, idle', waitMs)
    await sleep(renewMs * 3)
    t.equal(starts(apps, 'k'), 1, 'nothing restarted')
    const unknown = await a.json('/tasks/nope/cancel', 'POST')
    t.equal(unknown.statusCode, 404)
    t.equal(unknown.body.code, 'FST_ERR_AGENT_SSE_UNKNOWN_TASK')
  })

  t.test('a cancel is final even when the owner reads the cluster before its peers heard of it', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    // The owner's client asks for 1 s, the peer's for 5 s: the owner's own end changes the smallest interval.
    const onA = await a.sse('/agents/n/metrics/stream?interval_seconds=1')
    const owner = await ownerOf(apps, 'n')
    t.equal(owner, a)
    const onB = await b.sse('/agents/n/metrics/stream?interval_seconds=5')
    await statusBecomes(t, a, 'n', { sse_clients: 2, requested_intervals: [1, 5] })
    const cancelled = await a.json(`/tasks/${encodeURIComponent((await a.status('n')).task_id)}/cancel`, 'POST')
    t.equal(cancelled.statusCode, 200)
    for (const client of [onA, onB]) t.same(JSON.parse((await client.next((event) => event.event === 'end')).data), { reason: 'cancelled' })
    await sleep(400 + renewMs * 3)
    t.equal(starts(apps, 'n'), 1, 'no restart after the cancel')
    t.same(liveTasks(apps), [])
  })

  t.test('a stop right after a start, on another instance, finds the hold', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const client = await a.sse('/agents/v/metrics/stream')
    await ownerOf(apps, 'v')
    // The stream is already active, so the start answers at once; the stop goes to b straight after.
    t.equal((await a.json('/agents/v/metrics/streaming/start', 'POST')).statusCode, 200)
    const stopped = await b.json('/agents/v/metrics/streaming/stop', 'POST')
    t.equal(stopped.body.manual_hold, false)
    await statusBecomes(t, a, 'v', { manual_hold: false })
    client.close()
    await waitFor(() => stops(apps, 'v') === 1, 'the stream stops once its client left', waitMs)
    t.same(liveTasks(apps), [])
  })

  t.test('a graceful close of the owner hands the agent over; event ids keep increasing and replay works anywhere', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const onA = await a.sse('/agents/f/metrics/stream')
    const owner = await ownerOf(apps, 'f')
    t.equal(owner, a)
    const onB = await b.sse('/agents/f/metrics/stream')
    await waitFor(async () => (await a.status('f')).sse_clients === 2, 'two clients', waitMs)
    a.adapter.push('f', { n: 1 })
    a.adapter.push('f', { n: 2 })
    const before = [await metrics(onB), await metrics(onB)]
    await metrics(onA)
    const closedAt = Date.now()
    await a.app.close()
    t.equal(a.adapter.stopsFor('f'), 1, 'the closing owner stopped its task')
    t.same(JSON.parse((await onA.next((event) => event.event === 'end')).data), { reason: 'server-shutdown' })
    await waitFor(() => b.adapter.startsFor('f') === 1, 'b starts the stream', waitMs)
    t.ok(Date.now() - closedAt <= renewMs + slackMs, `b took over ${Date.now() - closedAt} ms after the close`)
    await statusBecomes(t, b, 'f', { state: 'active', owner: 'b', task_id: 'b:task-1', sse_clients: 1 })
    b.adapter.push('f', { n: 3 })
    const after = await metrics(onB)
    t.ok(follows(before[1]!.id, after.id), `ids continue across the change of owner (${before[1]!.id}, ${after.id})`)
    // A load-balanced reconnect: Last-Event-ID from one instance means the same on another.
    const resumed = await b.sse('/agents/f/metrics/stream', { 'last-event-id': before[0]!.id! })
    t.same([JSON.parse((await metrics(resumed)).data), JSON.parse((await metrics(resumed)).data)], [{ n: 2 }, { n: 3 }], 'replayed after the given id')
    onB.close()
    resumed.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })

  t.test('an owner whose lease another instance took stops its stream and publishes nothing more', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const onA = await a.sse('/agents/s/metrics/stream')
    const onB = await b.sse('/agents/s/metrics/stream')
    const owner = await ownerOf(apps, 's')
    const keyPrefix = (await findPrefix(redis, 's'))!
    // What a partition looks like from Redis: the lease expired and someone else took it.
    const intruder = redis.connect()
    t.teardown(() => intruder.disconnect())
    await intruder.set(`${keyPrefix}{s}:owner`, 'elsewhere', 'PX', 1500)
    await waitFor(() => owner.adapter.stopsFor('s') === 1, 'the old owner stops its task', waitMs)
    const stoppedTask = owner.adapter.stopCalls[0]!.taskId
    owner.adapter.startCalls[0]!.sink.push({ late: true })
    await sleep(100)
    t.notOk([...onA.events, ...onB.events].some((event) => event.event === 'metrics' && event.data.includes('late')), 'a stale owner cannot publish')
    // Once the foreign lease expires an instance with clients takes the agent again.
    // One read: a non-owner's view of the old task can still say active for a renewal period.
    await waitFor(async () => {
      const status = await a.status('s')
      return status.state === 'active' && status.task_id !== null && status.task_id !== stoppedTask
    }, 'a new task', waitMs)
    t.equal(liveTasks(apps, 's').length, 1, 'exactly one live stream')
    onA.close()
    onB.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })

  t.test('malformed and forged messages on the agent channel and the inbox are dropped without effect', async (t) => {
    const apps = await cluster(t, 2, redis)
    const [a] = apps as [ClusterApp, ClusterApp]
    const onA = await a.sse('/agents/m/metrics/stream')
    const owner = await ownerOf(apps, 'm')
    owner.adapter.push('m', { before: 1 })
    const first = await metrics(onA)
    const keyPrefix = (await findPrefix(redis, 'm'))!
    const publisher = redis.connect()
    t.teardown(() => publisher.disconnect())
    const forged = [
      // Malformed.
      '', 'x', 's\nnope', 's\n1\n0\n{}', 's\n5\n1\n{bad', 's\n5\n-1\n{}', 'e\n"m"', 'f\n"m"\n{}', 'i\n1\n{', 'r\n2', '{', 'e\n{\n1',
      // Well formed, but an id jump to 2^53-1, a task that is not live, a non-object sample.
      `s\n${Number.MAX_SAFE_INTEGER}\n1\n{"forged":1}`, 's\n7\n1\n[1]',
      'e\n"not-a-live-task"\n"cancelled"', 'f\n"not-a-live-task"\n{"message":"forged","statusCode":502}',
      // Demand changes: malformed, invalid records, and one from far in the future with no demand (it would hide
      // every later read and stop the stream for good).
      'd\nx\n[]', 'd\n1\n{', 'd\n1\n{"not":"a list"}', `d\n${Date.now()}\n["forger7","garbage"]`, `d\n${Date.now() + 3_600_000}\n[]`
    ]
    for (const junk of forged) {
      // On a Redis Cluster the agent channel is sharded (SPUBLISH), the inbox is not.
      await publishAs(publisher, `${keyPrefix}{m}:s`, junk)
      await publishAs(publisher, `${keyPrefix}inbox:a`, junk)
    }
    await publishAs(publisher, `${keyPrefix}inbox:a`, JSON.stringify({ op: 'cancelled', requestId: 'unknown', found: true }))
    await publishAs(publisher, `${keyPrefix}inbox:a`, JSON.stringify({ op: 'cancel', requestId: 'r', from: 'nobody', agentId: 'm', taskId: 'not-a-live-task' }))
    await publishAs(publisher, `${keyPrefix}inbox:a`, JSON.stringify({ op: 'demand', agentId: 'm' }))
    // Presence records out of bounds: negative, zero and huge counts and intervals, an id floor at 2^53-1.
    for (const [field, record] of [
      ['i:forger1', { c: -1, i: [], h: null, e: 0 }],
      ['i:forger2', { c: 1, i: [[0, 1]], h: null, e: 0 }],
      ['i:forger3', { c: 1e12, i: [[1, 1e12]], h: null, e: 0 }],
      ['i:forger4', { c: 0, i: [], h: null, e: Number.MAX_SAFE_INTEGER }],
      ['i:forger5', { c: 0, i: [], h: -5, e: 0 }]
    ] as const) {
      await publisher.hset(`${keyPrefix}{m}:demand`, field, `${Date.now() + 60_000}|${JSON.stringify(record)}`)
    }
    await publisher.hset(`${keyPrefix}{m}:demand`, 'i:forger6', 'garbage')
    await sleep(CLUSTER_TEST_LEASE_MS / 3 + 300) // one renewal reads them
    owner.adapter.push('m', { ok: 1 })
    const next = await metrics(onA)
    t.same(JSON.parse(next.data), { ok: 1 }, 'still streaming, and no forged sample was delivered')
    t.ok(follows(first.id, next.id), `ids go on from the last real one (${first.id}, ${next.id})`)
    t.same(onA.events.filter((event) => event.event !== 'metrics'), [], 'no end, error or gap from the forged messages')
    t.match(await a.status('m'), { state: 'active', sse_clients: 1, requested_intervals: [1], manual_hold: false })
    onA.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })
})

t.test(`Redis going away and coming back${on}`, { skip }, async (t) => {
  // On a Redis Cluster: every node SIGKILLed (the whole cluster down), then started again with its slots and no data.
  t.test('503 with Retry-After while Redis is down; clients get event: error; the owner stops within leaseMs; one stream after', async (t) => {
    const redis = await startRedisTarget(t, target)
    const apps = await cluster(t, 2, redis)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const onA = await a.sse('/agents/r/metrics/stream')
    const onB = await b.sse('/agents/r/metrics/stream')
    const owner = await ownerOf(apps, 'r')
    await redis.stop()
    const downAt = Date.now()
    for (const client of [onA, onB]) {
      const error = JSON.parse((await client.next((event) => event.event === 'error', 'event: error')).data)
      t.equal(error.code, 'FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE')
      t.equal(error.statusCode, 503)
      await waitFor(() => client.ended, 'the client closed')
    }
    for (const path of ['/agents/r/status', '/streams', '/agents/r/metrics/stream']) {
      const response = await b.json(path)
      t.equal(response.statusCode, 503, `${path} answers 503`)
      t.equal(response.body.code, 'FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE')
      t.ok(Number(response.headers['retry-after']) >= 1, 'with Retry-After')
    }
    await waitFor(() => owner.adapter.stopsFor('r') === 1, 'the owner stops its stream', leaseMs + waitMs)
    const keptFor = Date.now() - downAt
    t.ok(keptFor <= leaseMs + slackMs, `the owner kept streaming ${keptFor} ms without Redis (lease ${leaseMs} ms)`)

    await redis.start()
    const upAt = Date.now()
    await waitFor(async () => (await a.json('/agents/r/status')).statusCode === 200 && (await b.json('/agents/r/status')).statusCode === 200, 'both instances serve again', waitMs)
    t.ok(Date.now() - upAt <= renewMs + 1000, `serving ${Date.now() - upAt} ms after Redis returned`)
    const again = [await a.sse('/agents/r/metrics/stream'), await b.sse('/agents/r/metrics/stream')]
    const newOwner = await ownerOf(apps, 'r')
    await sleep(renewMs * 3)
    t.equal(liveTasks(apps, 'r').length, 1, 'exactly one stream')
    newOwner.adapter.push('r', { back: true })
    for (const client of again) t.same(JSON.parse((await metrics(client)).data), { back: true })
    for (const client of again) client.close()
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })

  t.test('a short outage (under leaseMs) keeps a held stream and its task; Redis data loss is repaired', async (t) => {
    const redis = await startRedisTarget(t, target)
    // A restarted Redis Cluster primary reports cluster_state:fail for its first 2 s (CLUSTER_WRITABLE_DELAY), so
    // the cluster's shortest outage is about 2.5 s, most of a 3 s lease on a busy machine: a longer lease there.
    const shortOutageLeaseMs = target === 'cluster' ? leaseMs * 2 : leaseMs
    const apps = await cluster(t, 2, redis, { leaseMs: shortOutageLeaseMs })
    const [a, b] = apps as [ClusterApp, ClusterApp]
    t.equal((await a.json('/agents/q/metrics/streaming/start', 'POST')).statusCode, 200)
    const taskId = (await a.status('q')).task_id
    const before = await b.sse('/agents/q/metrics/stream')
    a.adapter.push('q', { n: 1 })
    const firstId = Number((await metrics(before)).id)
    const downAt = Date.now()
    await redis.restart()
    await waitFor(async () => (await b.json('/agents/q/status')).statusCode === 200 && (await a.json('/agents/q/status')).statusCode === 200, 'serving again', waitMs)
    t.comment(`timing: serving again ${Date.now() - downAt} ms after the restart began (lease ${shortOutageLeaseMs} ms)`)
    await statusBecomes(t, b, 'q', { manual_hold: true, state: 'active', task_id: taskId, owner: 'a' })
    t.equal(starts(apps, 'q'), 1, 'no restart')
    t.equal(stops(apps, 'q'), 0)
    const after = await b.sse('/agents/q/metrics/stream')
    a.adapter.push('q', { n: 2 })
    const second = await after.next((event) => event.event === 'metrics' && JSON.parse(event.data).n === 2, 'the sample after the restart')
    t.ok(Number(second.id) > firstId, `event ids keep increasing although Redis lost its counter (${firstId} then ${second.id})`)
    after.close()
    t.equal((await b.json('/agents/q/metrics/streaming/stop', 'POST')).statusCode, 200)
    await waitFor(() => liveTasks(apps).length === 0, 'no live task', waitMs)
  })
})

// Needs no Redis: runs once, in the standalone run.
t.test('redisCoordinator options fail with a message naming the option', { skip: target === 'cluster' ? 'no Redis involved: runs in cluster.test.ts' : false }, async (t) => {
  const redis = new Redis({ lazyConnect: true })
  t.teardown(() => redis.disconnect())
  const cases: Array<[unknown, RegExp]> = [
    [{}, /"coordinator\.redis" must be an ioredis client/],
    [{ redis: {} }, /"coordinator\.redis"/],
    [{ redis, leaseMs: 99 }, /"coordinator\.leaseMs" must be an integer >= 100, got 99/],
    [{ redis, leaseMs: 1000.5 }, /"coordinator\.leaseMs"/],
    [{ redis, keyPrefix: 7 }, /"coordinator\.keyPrefix" must be a string/],
    [{ redis, instanceId: '' }, /"coordinator\.instanceId" must be a non-empty string/],
    [{ redis, leaseMS: 5000 }, /"coordinator\.leaseMS" is not an option of redisCoordinator\(\) \(did you mean "coordinator\.leaseMs"\?\)/]
  ]
  for (const [options, message] of cases) {
    t.throws(() => redisCoordinator(options as never), { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION', message })
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(agentSse, { adapter: new TestAdapter(), coordinator: {} as never }) }, { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION', message: /"coordinator" must be a coordinator/ })
  const coordinator = redisCoordinator({ redis })
  const { StreamLifecycle } = await import('../lib/index.js')
  t.throws(() => new StreamLifecycle({ adapter: new TestAdapter(), coordinator: { attach: 1 } as never }), { message: /"coordinator"/ })
  const lifecycle = new StreamLifecycle({ adapter: new TestAdapter(), coordinator })
  t.ok(lifecycle.coordinated)
  t.throws(() => new StreamLifecycle({ adapter: new TestAdapter(), coordinator }), { message: /already attached/ })
})

/** The key prefix the cluster of a test uses, found from the agent's lease key (`<prefix>{<agentId>}:owner`). */
async function findPrefix (redis: RedisTarget, agentId: string): Promise<string | null> {
  const keys = await redis.keys(`*{${agentId}}:owner`)
  return keys.length === 1 ? keys[0]!.slice(0, -`{${agentId}}:owner`.length) : null
}
