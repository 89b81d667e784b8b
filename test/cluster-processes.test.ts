// Cluster mode with real processes: every instance is a child process running
// test/fixtures/cluster-instance.js (the built package, imported by name) against a real
// redis-server, and every adapter call of the whole cluster lands in the test's recorder.
// These cover what in-process instances cannot: SIGKILL, SIGSTOP/SIGCONT and a real
// SIGTERM shutdown. Time bounds are loose on purpose: the condition is the assertion, the
// bound only catches a takeover that does not happen in any reasonable time. The measured
// latencies are printed as `# timing:` comments. cluster-processes.redis-cluster.test.ts runs the
// same tests against a real 3-master Redis Cluster (AGENT_SSE_REDIS_TARGET=cluster).
import { existsSync } from 'node:fs'
import t, { type Test } from 'tap'
import { CLUSTER_TEST_LEASE_MS, redisTargetSkip, targetSuffix } from './helpers/cluster-app.js'
import { startCluster, type ClusterOptions, type Instance } from './helpers/cluster.js'
import type { RecordedEvent, Recorder } from './helpers/recorder.js'
import { waitFor, type LogRecord, type SseStream } from './helpers/server.js'

// Long enough that a stalled process (an instance starting up on a busy machine, or this one)
// hands nothing over: the failover tests hand over by SIGKILL, SIGSTOP and SIGTERM.
const leaseMs = CLUSTER_TEST_LEASE_MS
const renewMs = leaseMs / 3
const stopDelayMs = 300
const sampleMs = 50
/** Added to every time bound: process scheduling, a busy CI machine. */
const slackMs = 1500
const options = { leaseMs, stopDelayMs, sampleMs }
// About 70 s alone; the margin is for a machine at half this one's speed.
t.setTimeout(240_000)

/** What the fixture's fake agent pushes, as the SSE client sees it. */
interface Sample { instance: string, agentId: string, taskId: string, seq: number, at: number }
interface Metric { id: number, sample: Sample }
interface Status {
  agent_id: string
  streaming_active: boolean
  state: string
  sse_clients: number
  manual_hold: boolean
  task_id: string | null
  interval_seconds: number | null
  started_at: string | null
  requested_intervals: number[]
  owner: string | null
}

const streamPath = (agentId: string) => `/agents/${agentId}/metrics/stream?interval_seconds=1`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function metricsOf (stream: SseStream): Metric[] {
  return stream.events.filter((event) => event.event === 'metrics').map((event) => ({ id: Number(event.id), sample: JSON.parse(event.data) as Sample }))
}

/** Waits for a metrics event matching `predicate` (without consuming anything) and returns it. */
async function metricWhere (stream: SseStream, predicate: (metric: Metric) => boolean, what: string, timeoutMs = 5000): Promise<Metric> {
  let found: Metric | undefined
  await waitFor(() => {
    found = metricsOf(stream).find(predicate)
    return found !== undefined
  }, what, timeoutMs)
  return found!
}

/** Waits until the stream has received `count` more metrics events than it had at the call. */
async function moreMetrics (stream: SseStream, count: number, what: string, timeoutMs = 5000): Promise<Metric[]> {
  const before = metricsOf(stream).length
  await waitFor(() => metricsOf(stream).length >= before + count, what, timeoutMs)
  return metricsOf(stream).slice(before)
}

function strictlyIncreasing (ids: number[]): boolean {
  return ids.every((id, index) => Number.isSafeInteger(id) && id > 0 && (index === 0 || id > ids[index - 1]!))
}

function eventsOf (stream: SseStream, type: string) {
  return stream.events.filter((event) => event.event === type)
}

async function status (instance: Instance, agentId: string): Promise<Status> {
  return await instance.status(agentId) as Status
}

/** The instance every live instance reports as the agent's active owner. */
async function activeOwner (instances: Instance[], agentId: string, timeoutMs = 5000): Promise<{ owner: Instance, status: Status }> {
  let result: { owner: Instance, status: Status } | undefined
  await waitFor(async () => {
    const statuses = await Promise.all(instances.map((instance) => status(instance, agentId)))
    const first = statuses[0]!
    const owner = instances.find((instance) => instance.id === first.owner)
    if (first.state !== 'active' || owner === undefined || first.task_id === null) return false
    if (!statuses.every((other) => other.state === 'active' && other.owner === first.owner && other.task_id === first.task_id)) return false
    result = { owner, status: first }
    return true
  }, `an active owner of ${agentId} seen by ${instances.map((instance) => instance.id).join(', ')}`, timeoutMs)
  return result!
}

function stopsOf (recorder: Recorder, taskId: string): RecordedEvent[] {
  return recorder.stops().filter((event) => event.taskId === taskId)
}

/** On failure: the recorder's events and each instance's plugin log lines, for the report. */
function dumpOnFailure (t: Test, recorder: Recorder, instances: Instance[], clients: () => SseStream[] = () => []) {
  t.teardown(() => {
    if (t.passing()) return
    const lines = [`--- ${t.name}: recorder events`, ...recorder.events.map((event) => JSON.stringify(event))]
    for (const instance of instances) {
      lines.push(`--- instance ${instance.id} log`)
      for (const log of instance.logs) {
        if (typeof log.msg === 'string' && !/incoming request|request completed/.test(log.msg)) lines.push(`${log.time as number} ${log.level} ${log.msg}`)
      }
    }
    for (const client of clients()) {
      lines.push(`--- client ${client.url}: ${client.events.filter((event) => event.event !== 'metrics').map((event) => `${event.event}:${event.data}`).join(' | ')}; ids ${metricsOf(client).map((m) => `${m.id}/${m.sample.taskId}`).slice(-40).join(' ')}`)
    }
    console.error(lines.join('\n'))
  })
}

const dist = ['../dist/esm/index.js', '../dist/esm/redis/index.js'].map((path) => new URL(path, import.meta.url))

/**
 * startCluster, retried when an instance could not load the package: dist/ may be rebuilt
 * while the tests run (an instance of a failed attempt is killed in teardown like any other).
 */
async function cluster (t: Test, n: number, overrides: ClusterOptions = {}) {
  for (let attempt = 1; ; attempt++) {
    await waitFor(() => dist.every((file) => existsSync(file)), 'dist/ to be built (npm run build)', 60_000)
    try {
      return await startCluster(t, n, { ...options, ...overrides })
    } catch (err) {
      if (attempt === 5 || !/ERR_MODULE_NOT_FOUND|Cannot find module|SyntaxError/.test(String(err))) throw err
      t.comment(`an instance could not load dist/ (being rebuilt?), starting the cluster again: ${String(err).split('\n')[0]}`)
      await sleep(1000)
    }
  }
}

const skip = redisTargetSkip()
const on = targetSuffix()

t.test(`three instances share one agent task; the stop comes only after the last client anywhere left${on}`, { skip }, async (t) => {
  const { recorder, instances } = await cluster(t, 3)
  const [a, b, c] = instances as [Instance, Instance, Instance]
  const clients: SseStream[] = []
  dumpOnFailure(t, recorder, instances, () => clients)
  // Two on a, one on b, one on c.
  for (const instance of [a, a, b, c]) clients.push(await instance.sse(streamPath('x')))
  const openedAt = Date.now()
  for (const client of clients) t.equal(client.statusCode, 200, `200 from ${client.url}`)

  // Every instance says the same, within a renewal period (the bound is loose).
  let statuses: Status[] = []
  await waitFor(async () => {
    statuses = await Promise.all(instances.map((instance) => status(instance, 'x')))
    const first = statuses[0]!
    return first.state === 'active' && first.owner !== null && statuses.every((s) => s.sse_clients === 4 && s.state === 'active' && s.owner === first.owner && s.task_id === first.task_id)
  }, 'a, b and c to agree on 4 clients, one owner, one task', renewMs * 2 + slackMs)
  const agreedMs = Date.now() - openedAt
  t.comment(`timing: status agreed on a, b, c ${agreedMs} ms after the last client connected`)

  t.equal(recorder.starts('x').length, 1, 'exactly one start in the cluster')
  const start = recorder.starts('x')[0]!
  const owner = instances.find((instance) => instance.id === start.instance)!
  for (const [index, s] of statuses.entries()) {
    t.match(s, { agent_id: 'x', streaming_active: true, state: 'active', sse_clients: 4, manual_hold: false, task_id: start.taskId, interval_seconds: 1, owner: owner.id, requested_intervals: [1, 1, 1, 1] }, `status on ${instances[index]!.id}`)
  }
  for (const instance of instances) {
    const { statusCode, body } = await instance.json('/streams')
    t.equal(statusCode, 200)
    t.match(body.streams, [{ agent_id: 'x', owner: owner.id, task_id: start.taskId, sse_clients: 4 }], `GET /streams on ${instance.id} lists x`)
  }

  for (const client of clients) await moreMetrics(client, 5, `metrics on ${client.url}`)
  for (const [index, client] of clients.entries()) {
    const metrics = metricsOf(client)
    t.ok(metrics.every((m) => m.sample.taskId === start.taskId && m.sample.instance === owner.id && m.sample.agentId === 'x'), `client ${index} gets samples of task ${start.taskId} only`)
    t.ok(strictlyIncreasing(metrics.map((m) => m.id)), `client ${index}: event ids strictly increase`)
  }

  // Close the clients one by one, each time waiting longer than stopDelayMs plus a renewal.
  for (let index = 0; index < clients.length - 1; index++) {
    clients[index]!.close()
    await sleep(stopDelayMs + renewMs + 300)
    t.equal(recorder.stops('x').length, 0, `no stop with ${clients.length - index - 1} client(s) left`)
    await waitFor(async () => (await status(c, 'x')).sse_clients === clients.length - index - 1, `c to count ${clients.length - index - 1} clients`, renewMs * 2 + slackMs)
    for (const remaining of clients.slice(index + 1)) await moreMetrics(remaining, 1, `metrics still flowing on ${remaining.url}`)
  }
  const last = clients[clients.length - 1]!
  last.close()
  const lastClosedAt = Date.now()
  await recorder.waitFor(() => recorder.stops('x').length >= 1, 'the stop after the last client left', stopDelayMs + renewMs * 2 + slackMs)
  const stop = recorder.stops('x')[0]!
  t.comment(`timing: stop recorded ${stop.at - lastClosedAt} ms after the last client closed (stopDelayMs ${stopDelayMs})`)
  t.ok(stop.at - lastClosedAt >= stopDelayMs - 50, 'not before stopDelayMs')
  t.match(stop, { instance: owner.id, taskId: start.taskId, foreign: false })
  await sleep(renewMs * 3)
  t.equal(recorder.stops('x').length, 1, 'exactly one stop')
  t.equal(recorder.starts('x').length, 1, 'still one start')
  t.same(recorder.liveTasks(), [], 'nothing left running')
  for (const instance of instances) {
    t.match(await status(instance, 'x'), { streaming_active: false, state: 'idle', sse_clients: 0, owner: null, task_id: null }, `idle on ${instance.id}`)
    t.same((await instance.json('/streams')).body, { streams: [], next_cursor: null }, `no streams on ${instance.id}`)
  }
})

t.test(`the stop debounce is cluster-wide: a client on b within stopDelayMs of the last one leaving a keeps the task${on}`, { skip }, async (t) => {
  // Long enough that the client on b comes within it even if this process stalls for a second.
  const stopDelayMs = 2000
  const { recorder, instances } = await cluster(t, 2, { stopDelayMs })
  const [a, b] = instances as [Instance, Instance]
  const clients: SseStream[] = []
  dumpOnFailure(t, recorder, instances, () => clients)
  const first = await a.sse(streamPath('d'))
  clients.push(first)
  const { status: active } = await activeOwner(instances, 'd')
  t.equal(active.owner, 'a')
  await moreMetrics(first, 2, 'metrics on a')
  first.close()
  const closedAt = Date.now()
  await waitFor(async () => (await status(a, 'd')).state === 'lingering', 'a to linger', stopDelayMs)
  const second = await b.sse(streamPath('d'))
  clients.push(second)
  const reopenedMs = Date.now() - closedAt
  t.comment(`timing: client on b connected ${reopenedMs} ms after the one on a closed (stopDelayMs ${stopDelayMs})`)
  t.ok(reopenedMs < stopDelayMs, 'within the debounce window')
  await waitFor(async () => (await status(a, 'd')).state === 'active', 'active again', renewMs * 2 + slackMs)
  const metrics = await moreMetrics(second, 3, 'metrics on b')
  t.ok(metrics.every((m) => m.sample.taskId === active.task_id), 'b gets the same task')
  await sleep(stopDelayMs + renewMs * 3)
  t.equal(recorder.stops('d').length, 0, 'no stop')
  t.equal(recorder.starts('d').length, 1, 'no second start')
  t.match(await status(b, 'd'), { state: 'active', task_id: active.task_id, sse_clients: 1 })

  second.close()
  await recorder.waitFor(() => recorder.stops('d').length >= 1, 'the stop', stopDelayMs + renewMs * 2 + slackMs)
  await sleep(renewMs * 3)
  t.equal(recorder.stops('d').length, 1, 'exactly one stop')
  t.equal(recorder.starts('d').length, 1)
  t.same(recorder.liveTasks(), [])
})

t.test(`SIGKILL of the owner: the survivor takes over within the lease, stops the dead task, event ids go on${on}`, { skip }, async (t) => {
  const { recorder, instances } = await cluster(t, 2)
  const [a, b] = instances as [Instance, Instance]
  const clients = [await a.sse(streamPath('y')), await b.sse(streamPath('y'))]
  dumpOnFailure(t, recorder, instances, () => clients)
  const { owner, status: before } = await activeOwner(instances, 'y')
  const survivor = owner === a ? b : a
  const watching = clients[owner === a ? 1 : 0]!
  const oldTask = before.task_id!
  await moreMetrics(watching, 3, 'metrics before the kill')

  const killedAt = Date.now()
  owner.kill('SIGKILL')
  t.match(await owner.waitExit(), { signal: 'SIGKILL' })
  const bound = leaseMs + renewMs + slackMs
  const firstNew = await metricWhere(watching, (m) => m.sample.instance === survivor.id, 'a sample from the survivor', bound)
  const sampleAfterMs = Date.now() - killedAt
  const start = recorder.starts('y').find((event) => event.instance === survivor.id)
  t.ok(start, 'the survivor started a task')
  t.comment(`timing: after SIGKILL, survivor's start recorded ${start!.at - killedAt} ms, first new sample at the survivor's client ${sampleAfterMs} ms (leaseMs ${leaseMs}, renewal ${renewMs})`)
  t.ok(start!.at - killedAt <= leaseMs + renewMs + slackMs, 'takeover within leaseMs + a renewal (+ slack)')
  t.equal(firstNew.sample.taskId, start!.taskId, 'the new samples come from the survivor\'s task')

  await recorder.waitFor(() => stopsOf(recorder, oldTask).length > 0, 'the best-effort stop of the dead owner\'s task', slackMs)
  t.match(stopsOf(recorder, oldTask), [{ type: 'stop', instance: survivor.id, agentId: 'y', foreign: true }], 'the survivor stopped the dead owner\'s task (foreign)')
  t.comment(`timing: foreign stop of ${oldTask} recorded ${stopsOf(recorder, oldTask)[0]!.at - killedAt} ms after SIGKILL`)

  await moreMetrics(watching, 5, 'metrics after the failover')
  const metrics = metricsOf(watching)
  t.ok(strictlyIncreasing(metrics.map((m) => m.id)), `event ids keep increasing across the failover: ${metrics.map((m) => m.id).join(',')}`)
  const lastOld = metrics.filter((m) => m.sample.taskId === oldTask).pop()
  t.ok(lastOld !== undefined && firstNew.id > lastOld.id, `the first new id ${firstNew.id} follows the last old one ${lastOld?.id}`)
  const switched = metrics.findIndex((m) => m.sample.taskId !== oldTask)
  t.ok(metrics.slice(switched).every((m) => m.sample.taskId === start!.taskId), 'nothing from the old task after the switch')
  t.same(eventsOf(watching, 'end').concat(eventsOf(watching, 'error')), [], 'no end or error on the surviving client')
  t.comment(`surviving client: other events ${JSON.stringify(watching.events.filter((event) => event.event !== 'metrics'))}`)
  t.equal(watching.ended, false, 'the surviving client stays connected')

  await sleep(renewMs * 3)
  const live = recorder.liveTasks().filter((taskId) => !taskId.startsWith(`${owner.id}:`))
  t.same(live, [start!.taskId], 'exactly one live task of a live instance')
  t.same(recorder.liveTasks(), [start!.taskId])
  t.equal(recorder.starts('y').filter((event) => event.instance === survivor.id).length, 1, 'one start by the survivor')
  t.match(await status(survivor, 'y'), { state: 'active', owner: survivor.id, task_id: start!.taskId, sse_clients: 1 })
})

t.test(`SIGSTOP of the owner: another instance takes over and stops the old task; after SIGCONT the old owner gives up without stopping it again${on}`, { skip }, async (t) => {
  const { recorder, instances } = await cluster(t, 2)
  const [a, b] = instances as [Instance, Instance]
  const clients = [await a.sse(streamPath('z')), await b.sse(streamPath('z'))]
  dumpOnFailure(t, recorder, instances, () => clients)
  const { owner: frozen, status: before } = await activeOwner(instances, 'z')
  const other = frozen === a ? b : a
  const [onFrozen, onOther] = frozen === a ? [clients[0]!, clients[1]!] : [clients[1]!, clients[0]!]
  const oldTask = before.task_id!
  await moreMetrics(onOther, 3, 'metrics before the freeze')

  const frozenAt = Date.now()
  frozen.kill('SIGSTOP')
  await recorder.waitFor(() => recorder.starts('z').some((event) => event.instance === other.id), 'a start by the other instance', leaseMs + renewMs + slackMs)
  const start = recorder.starts('z').find((event) => event.instance === other.id)!
  t.comment(`timing: with the owner frozen, ${other.id}'s start recorded ${start.at - frozenAt} ms after SIGSTOP`)
  await metricWhere(onOther, (m) => m.sample.taskId === start.taskId, 'samples of the new task', slackMs)
  t.comment(`timing: first sample of the new task at ${other.id}'s client ${Date.now() - frozenAt} ms after SIGSTOP`)

  // Frozen well past its lease (a whole lease after it ran out).
  await sleep(Math.max(0, frozenAt + leaseMs * 2 + 100 - Date.now()))
  const thawedAt = Date.now()
  frozen.kill('SIGCONT')
  const gaveUp = (line: LogRecord) => typeof line.msg === 'string' && line.msg.includes('was taken over (and stopped) by the agent\'s next owner')
  await waitFor(() => frozen.logs.some(gaveUp), 'the old owner to give up its task without stopping it', leaseMs + 1000 + slackMs)
  const giveUpMs = Date.now() - thawedAt
  t.comment(`timing: after SIGCONT (frozen ${thawedAt - frozenAt} ms) the old owner gave up its task within ${giveUpMs} ms`)
  t.ok(giveUpMs <= leaseMs + 1000 + slackMs, 'given up within leaseMs + 1 s of SIGCONT (+ slack)')
  // Whoever stops a task records it; nobody stops a stopped task again.
  t.match(stopsOf(recorder, oldTask), [{ instance: other.id, foreign: true }], 'the old task was stopped exactly once, by the taker')

  await sleep(renewMs * 3)
  t.equal(stopsOf(recorder, oldTask).length, 1, 'still one stop of the old task')
  t.same(recorder.liveTasks(), [start.taskId], 'exactly one live task')
  t.equal(recorder.starts('z').length, 2, 'the old owner did not start again')
  await waitFor(async () => {
    const statuses = await Promise.all(instances.map((instance) => status(instance, 'z')))
    return statuses.every((s) => s.state === 'active' && s.owner === other.id && s.task_id === start.taskId && s.sse_clients === 2)
    // Two renewals for the thawed instance to publish and its peer to read, with room for a busy machine
    // (three test files at once, each with child processes).
  }, `every instance to show ${other.id} as the owner with both clients`, renewMs * 3 + slackMs * 2)
  t.pass(`status everywhere shows ${other.id} owning ${start.taskId}`)
  await metricWhere(onFrozen, (m) => m.sample.taskId === start.taskId, 'the thawed instance\'s client to get the new task\'s samples', renewMs * 2 + slackMs)
  await moreMetrics(onFrozen, 3, 'more samples on the thawed instance\'s client')
  for (const [name, client] of [['frozen', onFrozen], ['other', onOther]] as const) {
    t.same(eventsOf(client, 'end').concat(eventsOf(client, 'error')), [], `${name} instance's client: no end or error`)
    t.equal(client.ended, false, `${name} instance's client stays connected`)
    t.comment(`${name} instance's client: other events ${JSON.stringify(client.events.filter((event) => event.event !== 'metrics'))}`)
    const metrics = metricsOf(client)
    t.ok(strictlyIncreasing(metrics.map((m) => m.id)), `${name} instance's client: event ids strictly increase`)
    const switched = metrics.findIndex((m) => m.sample.taskId === start.taskId)
    t.ok(metrics.slice(switched).every((m) => m.sample.taskId === start.taskId), `${name} instance's client: no sample of the old task after the new one`)
  }
})

t.test(`graceful stop (SIGTERM) of the owner: its task stops, the other instance takes over at once${on}`, { skip }, async (t) => {
  const { recorder, instances } = await cluster(t, 2)
  const [a, b] = instances as [Instance, Instance]
  const clients = [await a.sse(streamPath('g')), await b.sse(streamPath('g'))]
  dumpOnFailure(t, recorder, instances, () => clients)
  const { owner, status: before } = await activeOwner(instances, 'g')
  const other = owner === a ? b : a
  const [onOwner, onOther] = owner === a ? [clients[0]!, clients[1]!] : [clients[1]!, clients[0]!]
  const oldTask = before.task_id!
  await moreMetrics(onOther, 3, 'metrics before the stop')

  const stoppingAt = Date.now()
  const exit = await owner.stop()
  const exitedAt = Date.now()
  t.same(exit, { code: 0, signal: null }, 'the owner exits cleanly')
  t.comment(`timing: the owner exited ${exitedAt - stoppingAt} ms after SIGTERM`)
  t.match(stopsOf(recorder, oldTask), [{ instance: owner.id, foreign: false }], 'the closing owner stopped its task before exiting')
  const ownStop = stopsOf(recorder, oldTask)[0]
  await recorder.waitFor(() => recorder.starts('g').some((event) => event.instance === other.id), 'a start by the other instance', renewMs + slackMs)
  const start = recorder.starts('g').find((event) => event.instance === other.id)!
  t.comment(`timing: after SIGTERM of the owner, ${other.id}'s start recorded ${start.at - stoppingAt} ms after SIGTERM, ${ownStop ? start.at - ownStop.at : NaN} ms after the owner's stop`)
  t.ok(ownStop === undefined || start.at - ownStop.at <= renewMs + slackMs, 'taken over within a renewal period (+ slack)')
  t.ok(ownStop === undefined || start.at >= ownStop.at, 'no overlap: the new task starts after the old one stopped')
  await metricWhere(onOther, (m) => m.sample.taskId === start.taskId, 'samples of the new task', slackMs)
  t.comment(`timing: first sample of the new task at the client ${Date.now() - stoppingAt} ms after SIGTERM`)
  await moreMetrics(onOther, 3, 'more samples')
  const metrics = metricsOf(onOther)
  t.ok(strictlyIncreasing(metrics.map((m) => m.id)), 'event ids strictly increase across the change of owner')
  t.same(eventsOf(onOther, 'end').concat(eventsOf(onOther, 'error')), [], 'no end or error on the other instance\'s client')
  t.same(eventsOf(onOwner, 'end').map((event) => JSON.parse(event.data)), [{ reason: 'server-shutdown' }], 'the closing instance\'s client got end: server-shutdown')

  await sleep(renewMs * 3)
  t.equal(stopsOf(recorder, oldTask).length, 1, 'the old task was stopped once (nothing left for a best-effort stop)')
  t.same(recorder.liveTasks(), [start.taskId], 'exactly one live task')
  t.match(await status(other, 'g'), { state: 'active', owner: other.id, task_id: start.taskId, sse_clients: 1 })
})

t.test(`manual hold and cancel across instances${on}`, { skip }, async (t) => {
  const { recorder, instances } = await cluster(t, 3)
  const [a, b, c] = instances as [Instance, Instance, Instance]
  const clients: SseStream[] = []
  dumpOnFailure(t, recorder, instances, () => clients)

  t.test('a hold set on a is released by a stop on b', async (t) => {
    const started = await a.json('/agents/h/metrics/streaming/start', 'POST')
    t.equal(started.statusCode, 200)
    t.match(started.body, { agent_id: 'h', streaming_active: true, state: 'active', manual_hold: true, sse_clients: 0, owner: 'a', task_id: String })
    t.equal(recorder.starts('h').length, 1)
    t.equal(recorder.starts('h')[0]!.taskId, started.body.task_id)
    const answeredAt = Date.now()
    // b reads a's snapshot: the hold, then (once a publishes it) the active task.
    await waitFor(async () => {
      const seen = await status(b, 'h')
      return seen.manual_hold && seen.task_id === started.body.task_id
    }, 'b to see the hold and the task', renewMs * 2 + slackMs)
    t.comment(`timing: b showed the hold and task ${Date.now() - answeredAt} ms after a answered the POST start`)
    t.match(await status(b, 'h'), { manual_hold: true, state: 'active', task_id: started.body.task_id, owner: 'a', sse_clients: 0 })

    const releasedAt = Date.now()
    const released = await b.json('/agents/h/metrics/streaming/stop', 'POST')
    t.equal(released.statusCode, 200)
    t.equal(released.body.manual_hold, false, 'released cluster-wide')
    t.comment(`timing: POST stop on b answered in ${Date.now() - releasedAt} ms (state ${released.body.state})`)
    for (const instance of [a, c]) t.equal((await status(instance, 'h')).manual_hold, false, `no hold on ${instance.id}`)
    await recorder.waitFor(() => recorder.stops('h').length >= 1, 'the stop after stopDelayMs', stopDelayMs + renewMs * 2 + slackMs)
    const stop = recorder.stops('h')[0]!
    t.comment(`timing: held stream stopped ${stop.at - releasedAt} ms after the POST stop on b (stopDelayMs ${stopDelayMs})`)
    t.ok(stop.at - releasedAt >= stopDelayMs - 50, 'not before stopDelayMs')
    t.match(stop, { instance: 'a', taskId: started.body.task_id, foreign: false })
    await sleep(renewMs * 3)
    t.equal(recorder.stops('h').length, 1, 'exactly one stop')
    t.equal(recorder.starts('h').length, 1)
    for (const instance of instances) t.match(await status(instance, 'h'), { manual_hold: false, state: 'idle', owner: null }, `idle on ${instance.id}`)
  })

  t.test('a cancel sent to a non-owner stops the task before it answers; clients everywhere get end: cancelled', async (t) => {
    const onB = await b.sse(streamPath('k'))
    const onC = await c.sse(streamPath('k'))
    clients.push(onB, onC)
    const { owner, status: active } = await activeOwner(instances, 'k')
    t.not(owner, a, 'a (no clients) does not own k')
    const nonOwner = owner === b ? c : b
    const taskId = active.task_id!
    await moreMetrics(onB, 2, 'metrics on b')
    await moreMetrics(onC, 2, 'metrics on c')

    const cancelledAt = Date.now()
    const cancelled = await nonOwner.json(`/tasks/${encodeURIComponent(taskId)}/cancel`, 'POST')
    const stoppedWhenAnswered = stopsOf(recorder, taskId).length
    t.comment(`timing: cancel through non-owner ${nonOwner.id} answered in ${Date.now() - cancelledAt} ms (status ${cancelled.statusCode}, state ${cancelled.body?.state})`)
    t.equal(cancelled.statusCode, 200, JSON.stringify(cancelled.body))
    t.equal(stoppedWhenAnswered, 1, 'the owner had stopped the task when the cancel answered')
    t.match(cancelled.body, { agent_id: 'k' })
    t.match(stopsOf(recorder, taskId), [{ instance: owner.id, foreign: false }])
    for (const client of [onB, onC]) {
      const end = await client.next((event) => event.event === 'end', `end on ${client.url}`)
      t.same(JSON.parse(end.data), { reason: 'cancelled' }, `end: cancelled on ${client.url}`)
      await waitFor(() => client.ended, `${client.url} to be closed by the server`)
    }
    await sleep(renewMs * 3)
    t.equal(recorder.starts('k').length, 1, 'nothing restarted')
    t.equal(recorder.stops('k').length, 1, 'one stop')
    t.same(recorder.liveTasks(), [])
    for (const instance of instances) t.match(await status(instance, 'k'), { state: 'idle', sse_clients: 0, owner: null }, `idle on ${instance.id}`)

    for (const instance of instances) {
      for (const unknown of ['nope', taskId]) {
        const response = await instance.json(`/tasks/${encodeURIComponent(unknown)}/cancel`, 'POST')
        t.equal(response.statusCode, 404, `cancel of ${unknown} on ${instance.id}`)
        t.match(response.headers['content-type'], /application\/json/)
        t.match(response.body, { statusCode: 404, code: 'FST_ERR_AGENT_SSE_UNKNOWN_TASK' })
      }
    }
  })
})
