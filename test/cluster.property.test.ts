// Random interleavings of cluster traffic: three in-process instances (a, b, c) on one real
// redis-server, two agents, SSE clients opening and leaving anywhere (at various intervals),
// fleet clients watching both agents over one connection (GET /metrics/stream?agents=…), manual
// holds set and released on any instance, cancels from any instance, samples pushed by the owner,
// and time passing. HTTP requests run in the background, so holds race with
// stops and cancels. After every step the safety invariants hold: at most one live task per
// agent in the cluster, no 5xx, per client and agent strictly increasing ids (on one redis-server
// also across a fleet connection's agents), at most one end per agent and nothing of it after it. Probes check liveness where it is cheap (a client that waited 1.5 s has
// exactly one stream, and a sample from its owner reaches it). At the end of a run everyone
// leaves, and the cluster goes quiet: no live task, every instance idle.
//
// A run takes a few seconds of real time. By default as many runs as fit in 20 s, and never fewer
// than 3; STRESS=1 (npm run test:stress) runs 60, CLUSTER_PROPERTY_RUNS=n exactly n (the file's
// timeout follows CLUSTER_PROPERTY_TIME_LIMIT_MS, which bounds runs and shrinking).
// cluster.property.redis-cluster.test.ts runs it against a real 3-master Redis Cluster
// (AGENT_SSE_REDIS_TARGET=cluster), by default on a smaller budget: 2 runs, up to 8 s.
// Reproduce a failure with CLUSTER_PROPERTY_SEED=<seed> CLUSTER_PROPERTY_PATH=<path> (both
// printed by fast-check); CLUSTER_PROPERTY_TRACE=1 prints what each run did.
import fc from 'fast-check'
import t, { type Test } from 'tap'
import type { StartCall } from './helpers/test-adapter.js'
import { CLUSTER_TEST_LEASE_MS, liveTasks, redisTargetKind, redisTargetSkip, startClusterApp, startRedisTarget, targetSuffix, type ClusterApp, type RedisTarget } from './helpers/cluster-app.js'
import { assertWithinBudget, envNumber, stress, type RunBudget } from './helpers/run-budget.js'
import { waitFor, type SseStream } from './helpers/server.js'

const target = redisTargetKind()
const skip = redisTargetSkip(target)
const EXPLICIT_RUNS = envNumber('CLUSTER_PROPERTY_RUNS')
const STRESS_RUNS = 60
/** CLUSTER_PROPERTY_TRACE=1 prints every run's trace. */
const TRACE = process.env.CLUSTER_PROPERTY_TRACE === '1'
/** Runs and shrinking stop after this, so that a failure is reported within the file's timeout. */
const TIME_LIMIT_MS = envNumber('CLUSTER_PROPERTY_TIME_LIMIT_MS') ?? (stress || EXPLICIT_RUNS !== undefined ? 20 * 60_000 : 100_000)
const budget: RunBudget = {
  ...(EXPLICIT_RUNS !== undefined || stress
    ? { minRuns: EXPLICIT_RUNS ?? STRESS_RUNS, maxRuns: EXPLICIT_RUNS ?? STRESS_RUNS, budgetMs: Infinity }
    // Against a Redis Cluster this is the second run of the same property in `npm test`: a smaller budget.
    : target === 'cluster' ? { minRuns: 2, maxRuns: 10, budgetMs: 8_000 } : { minRuns: 3, maxRuns: 20, budgetMs: 20_000 }),
  hardLimitMs: TIME_LIMIT_MS,
  seed: envNumber('CLUSTER_PROPERTY_SEED'),
  path: process.env.CLUSTER_PROPERTY_PATH || undefined
}
const replay = budget.seed !== undefined || budget.path !== undefined
// Margin over the limit: the run in flight when it strikes, teardown, a machine at half this one's speed.
t.setTimeout(TIME_LIMIT_MS + 60_000)
// In-process instances all stall when this process does: the lease rides that out (see the helper).
const LEASE_MS = CLUSTER_TEST_LEASE_MS
const RENEW_MS = LEASE_MS / 3
/** A hold waits at most adapterTimeoutMs (2000, the helper's default) + leaseMs: every request answers well within this. */
const REQUEST_BOUND_MS = 2000 + LEASE_MS + 3000
/** Everyone left: the cluster is quiet within this (stopDelayMs + a few renewals, generously). */
const QUIET_BOUND_MS = 300 + RENEW_MS * 3 + 3000
const RUN_BOUND_MS = 60_000
const PROBES_PER_RUN = 2
// On a Redis Cluster two agents of different masters (x's slot is on the third, w's on the first).
const agents = target === 'cluster' ? ['x', 'w'] : ['x', 'y']
const instanceIds = ['a', 'b', 'c'] as const

type Command =
  | { kind: 'open', on: number, agent: string, interval: number | null }
  | { kind: 'fleet', on: number, interval: number | null }
  | { kind: 'close', pick: number }
  | { kind: 'start', on: number, agent: string, interval: number | null }
  | { kind: 'stop', on: number, agent: string }
  | { kind: 'cancel', on: number, agent: string }
  | { kind: 'push', agent: string }
  | { kind: 'sleep', ms: number }
  | { kind: 'probe', on: number, agent: string }

const on = fc.integer({ min: 0, max: 2 })
const agent = fc.constantFrom(...agents)
const interval = fc.option(fc.integer({ min: 1, max: 3 }), { nil: null })
// Cross-shrinking turns steps that play no part in a failure into the first kind, a 0 ms sleep
// (the minimum length keeps them in the counterexample).
const command: fc.Arbitrary<Command> = fc.oneof(
  { withCrossShrink: true },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sleep' as const), ms: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('open' as const), on, agent, interval }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('fleet' as const), on, interval }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('close' as const), pick: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('start' as const), on, agent, interval }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('stop' as const), on, agent }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('cancel' as const), on, agent }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('push' as const), agent }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('probe' as const), on, agent }) }
)

interface Client {
  name: string
  /** One agent, or every agent for a fleet client (whose events name their agent). */
  agents: string[]
  fleet: boolean
  stream: SseStream
  closedByUs: boolean
  /** Events of `stream.events` already checked (this file never uses `next()`, which removes events). */
  seen: number
  /** The newest event id, per agent and (for a fleet client's one sequence on one redis-server) over the connection. */
  lastIds: Map<string, number>
  lastId: number
  ends: Map<string, number>
}

interface PendingRequest {
  what: string
  done: boolean
  promise: Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects after `ms` unless `promise` settled first. */
function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms) })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

/**
 * The teardown scope of one run: startClusterApp registers its closes with `t.teardown`; a run
 * is no tap test, so they are collected here and run (last in, first out) when the run ends.
 */
function runScope () {
  const teardowns: Array<() => unknown> = []
  const scope = { teardown (fn: () => unknown) { teardowns.push(fn) } } as unknown as Test
  return {
    scope,
    async close (): Promise<string[]> {
      const problems: string[] = []
      for (const fn of teardowns.reverse()) {
        try {
          await within(Promise.resolve(fn()), 10_000, 'a teardown')
        } catch (err) {
          problems.push((err as Error).message)
        }
      }
      return problems
    }
  }
}

let runs = 0

async function runSchedule (redis: RedisTarget, commands: Command[], stopDelayMs: number): Promise<void> {
  const run = ++runs
  const keyPrefix = `cprop${run}-${process.pid}-${Date.now()}:`
  const { scope, close } = runScope()
  const trace: string[] = [`run ${run}: stopDelayMs ${stopDelayMs}, leaseMs ${LEASE_MS}, keyPrefix ${keyPrefix}`]
  const violations: string[] = []
  const clients: Client[] = []
  const pending: PendingRequest[] = []
  /** `${agent}:${id}` → data: the same event id means the same sample on every client. */
  const samplesById = new Map<string, string>()
  let apps: ClusterApp[] = []
  let clientCount = 0
  let probes = 0

  const report = (message: string): Error => {
    const logs = apps.flatMap((app) => app.logs.filter((line) => line.level >= 40).map((line) => `  [${app.id}] ${line.msg}`))
    return new Error(`${message}\n--- trace (last 80) ---\n${trace.slice(-80).join('\n')}\n--- warnings and errors logged ---\n${logs.slice(-40).join('\n') || '  (none)'}`)
  }

  /** Checks the client's new events; records what is wrong in `violations`. */
  const scan = (client: Client): void => {
    const { events } = client.stream
    for (; client.seen < events.length; client.seen++) {
      const event = events[client.seen]!
      // A fleet client's events name their agent; its status events are the agents' statuses (not checked here).
      let data: any
      try {
        data = JSON.parse(event.data)
      } catch {
        violations.push(`${client.name}: ${event.event} data is not JSON: ${event.data}`)
        continue
      }
      if (client.fleet && event.event === 'status') continue
      const agent: string = client.fleet ? data?.agent_id : client.agents[0]
      if (!client.agents.includes(agent)) {
        violations.push(`${client.name}: ${event.event} of agent ${String(agent)}, which it does not watch: ${event.data}`)
        continue
      }
      if ((client.ends.get(agent) ?? 0) > 0) violations.push(`${client.name}: ${event.event} ${event.data} after the end of ${agent}`)
      if (event.event === 'metrics') {
        const id = Number(event.id)
        const last = client.lastIds.get(agent) ?? 0
        if (!Number.isInteger(id) || id <= last) violations.push(`${client.name}: event id ${event.id} of ${agent} after ${last}`)
        // One redis-server numbers every agent's samples in one sequence; a Redis Cluster numbers each agent's own.
        if (target !== 'cluster' && id <= client.lastId) violations.push(`${client.name}: event id ${event.id} after ${client.lastId} on the connection`)
        client.lastIds.set(agent, id)
        client.lastId = Math.max(client.lastId, id)
        const sample = client.fleet ? JSON.stringify(data.metrics) : event.data
        const key = `${agent}:${event.id}`
        const known = samplesById.get(key)
        if (known === undefined) samplesById.set(key, sample)
        else if (known !== sample) violations.push(`${client.name}: event ${event.id} of ${agent} is ${sample}, another client got ${known} under that id`)
      } else if (event.event === 'end') {
        const ends = (client.ends.get(agent) ?? 0) + 1
        client.ends.set(agent, ends)
        if (ends > 1) violations.push(`${client.name}: a second end of ${agent} (${event.data})`)
        if (data?.reason !== 'cancelled') violations.push(`${client.name}: end ${event.data} (only cancels end streams here)`)
        trace.push(`  ${client.name} got end ${event.data}`)
      } else {
        violations.push(`${client.name}: unexpected event ${event.event}: ${event.data}`)
      }
    }
    // A stream ends by itself only once every agent it watches has ended.
    if (client.stream.ended && !client.closedByUs && client.agents.some((agent) => (client.ends.get(agent) ?? 0) === 0)) {
      violations.push(`${client.name}: the server closed the stream before every agent's end (ends: ${JSON.stringify([...client.ends])})`)
      client.closedByUs = true // reported once
    }
  }

  /** The safety invariants, at any moment. */
  const check = (where: string): void => {
    for (const id of agents) {
      const live = liveTasks(apps, id)
      if (live.length > 1) violations.push(`${live.length} live tasks of agent ${id}: ${live.join(', ')}`)
    }
    const started = new Set<string>()
    const stopped = new Map<string, string>()
    for (const app of apps) {
      if (app.adapter.maxConcurrentPerAgent > 1) violations.push(`adapter of ${app.id} had ${app.adapter.maxConcurrentPerAgent} concurrent tasks of one agent`)
      for (const call of app.adapter.startCalls) started.add(call.taskId)
    }
    // Every task is stopped once, by whoever: no stop for a task that never started or was stopped already.
    for (const app of apps) {
      for (const { taskId } of app.adapter.stopCalls) {
        if (!started.has(taskId)) violations.push(`${app.id} stopped ${taskId}, which never started`)
        if (stopped.has(taskId)) violations.push(`task ${taskId} stopped twice (by ${stopped.get(taskId)} and ${app.id})`)
        stopped.set(taskId, app.id)
      }
    }
    for (const client of clients) scan(client)
    if (violations.length > 0) throw report(`${where}:\n  ${[...new Set(violations)].join('\n  ')}`)
  }

  /** A request in the background; its answer is checked when it arrives. */
  const send = (what: string, allowed: number[], request: () => Promise<{ statusCode: number, body: any }>, onOk?: (body: any) => void): void => {
    const entry: PendingRequest = { what, done: false, promise: Promise.resolve() }
    entry.promise = request().then((response) => {
      entry.done = true
      trace.push(`  ${what} → ${response.statusCode}${response.statusCode === 200 ? '' : ` ${response.body?.code}`}`)
      if (!allowed.includes(response.statusCode)) violations.push(`${what} answered ${response.statusCode}: ${JSON.stringify(response.body)}`)
      else if (response.statusCode === 200) onOk?.(response.body)
    }, (err: Error) => {
      entry.done = true
      violations.push(`${what} failed: ${err.message}`)
    })
    pending.push(entry)
  }

  const settlePending = async (): Promise<void> => {
    await within(Promise.all(pending.map((entry) => entry.promise)), REQUEST_BOUND_MS, 'the pending requests').catch(() => {})
    for (const entry of pending) if (!entry.done) violations.push(`${entry.what} did not answer within ${REQUEST_BOUND_MS} ms`)
    pending.length = 0
  }

  /** The start call of the agent's live task, and the instance running it. */
  const liveTaskOf = (id: string): { app: ClusterApp, call: StartCall } | null => {
    for (const app of apps) {
      for (const [taskId, agentId] of app.adapter.liveTasks) {
        if (agentId !== id) continue
        const call = app.adapter.startCalls.find((candidate) => candidate.taskId === taskId)
        if (call) return { app, call }
      }
    }
    return null
  }

  const open = async (app: ClusterApp, id: string, intervalSeconds: number | null): Promise<Client> => {
    const name = `client#${++clientCount}(${app.id}/${id}${intervalSeconds === null ? '' : `@${intervalSeconds}s`})`
    const stream = await app.sse(`/agents/${id}/metrics/stream${intervalSeconds === null ? '' : `?interval_seconds=${intervalSeconds}`}`)
    const client: Client = { name, agents: [id], fleet: false, stream, closedByUs: false, seen: 0, lastIds: new Map(), lastId: 0, ends: new Map() }
    clients.push(client)
    if (stream.statusCode !== 200) violations.push(`${name} opened with ${stream.statusCode}: ${stream.raw}`)
    return client
  }

  const openFleet = async (app: ClusterApp, intervalSeconds: number | null): Promise<Client> => {
    const name = `fleet#${++clientCount}(${app.id}/${agents.join(',')}${intervalSeconds === null ? '' : `@${intervalSeconds}s`})`
    const stream = await app.sse(`/metrics/stream?agents=${agents.join(',')}${intervalSeconds === null ? '' : `&interval_seconds=${intervalSeconds}`}`)
    const client: Client = { name, agents, fleet: true, stream, closedByUs: false, seen: 0, lastIds: new Map(), lastId: 0, ends: new Map() }
    clients.push(client)
    if (stream.statusCode !== 200) violations.push(`${name} opened with ${stream.statusCode}: ${stream.raw}`)
    return client
  }

  const step = async (index: number, cmd: Command): Promise<void> => {
    switch (cmd.kind) {
      case 'open': {
        const client = await open(apps[cmd.on]!, cmd.agent, cmd.interval)
        trace.push(`#${index} open ${client.name}`)
        break
      }
      case 'fleet': {
        const client = await openFleet(apps[cmd.on]!, cmd.interval)
        trace.push(`#${index} open ${client.name}`)
        break
      }
      case 'close': {
        const open = clients.filter((client) => !client.closedByUs && !client.stream.ended)
        const client = open[cmd.pick % Math.max(1, open.length)]
        trace.push(`#${index} close ${client?.name ?? '(no open client)'}`)
        if (client) {
          client.closedByUs = true
          client.stream.close()
        }
        break
      }
      case 'start': {
        const app = apps[cmd.on]!
        const what = `start ${cmd.agent} on ${app.id}${cmd.interval === null ? '' : ` @${cmd.interval}s`} (#${index})`
        trace.push(`#${index} ${what}`)
        // 409: the hold ended (a concurrent stop or cancel) before its stream became active.
        send(what, [200, 409], () => app.json(`/agents/${cmd.agent}/metrics/streaming/start`, 'POST', cmd.interval === null ? undefined : { interval_seconds: cmd.interval }), (status) => {
          // A start answers once the held stream is active.
          if (status.state !== 'active' || status.manual_hold !== true) violations.push(`${what} answered 200 with ${JSON.stringify(status)}`)
        })
        break
      }
      case 'stop': {
        const app = apps[cmd.on]!
        const what = `stop ${cmd.agent} on ${app.id} (#${index})`
        trace.push(`#${index} ${what}`)
        send(what, [200], () => app.json(`/agents/${cmd.agent}/metrics/streaming/stop`, 'POST'))
        break
      }
      case 'cancel': {
        const app = apps[cmd.on]!
        const status = await app.json(`/agents/${cmd.agent}/status`)
        if (status.statusCode !== 200) violations.push(`status of ${cmd.agent} on ${app.id} answered ${status.statusCode}: ${JSON.stringify(status.body)}`)
        const taskId: string | null = status.body?.task_id ?? null
        trace.push(`#${index} cancel ${cmd.agent} on ${app.id}: task ${taskId ?? '(none)'}`)
        // 404: the task ended meanwhile.
        if (taskId !== null) {
          const what = `cancel ${taskId} on ${app.id} (#${index})`
          send(what, [200, 404], () => app.json(`/tasks/${encodeURIComponent(taskId)}/cancel`, 'POST'), () => {
            // A cancel answers 200 once the owner stopped the task.
            if (liveTasks(apps).includes(taskId)) violations.push(`${what} answered 200 while the task is still live`)
          })
        }
        break
      }
      case 'push': {
        const live = liveTaskOf(cmd.agent)
        trace.push(`#${index} push ${cmd.agent}: ${live ? `through ${live.call.taskId}` : '(no live task)'}`)
        live?.call.sink.push({ agent: cmd.agent, n: index })
        break
      }
      case 'sleep':
        trace.push(`#${index} sleep ${cmd.ms} ms`)
        await sleep(cmd.ms)
        break
      case 'probe': {
        if (probes >= PROBES_PER_RUN) {
          trace.push(`#${index} probe skipped (${PROBES_PER_RUN} per run)`)
          break
        }
        probes++
        // Nothing in flight (a cancel would end the probe's client), then a client that waits.
        await settlePending()
        check(`before the probe at step ${index}`)
        const app = apps[cmd.on]!
        const client = await open(app, cmd.agent, 1)
        trace.push(`#${index} probe with ${client.name}`)
        await sleep(1500)
        check(`probe at step ${index}, 1.5 s after ${client.name} opened`)
        const live = liveTasks(apps, cmd.agent)
        if (live.length !== 1) throw report(`probe at step ${index}: ${live.length} live tasks of ${cmd.agent} 1.5 s after ${client.name} opened (expected exactly 1)`)
        const owner = liveTaskOf(cmd.agent)!
        const taskId = owner.call.taskId
        let statuses: unknown[] = []
        await waitFor(async () => {
          statuses = await Promise.all(apps.map((candidate) => candidate.status(cmd.agent)))
          return statuses.every((status) => {
            const s = status as { state: string, task_id: string | null, owner: string | null, sse_clients: number }
            return s.state === 'active' && s.task_id === taskId && s.owner === owner.app.id && s.sse_clients >= 1
          })
        }, 'statuses', RENEW_MS * 2 + 3000).catch(() => {
          throw report(`probe at step ${index}: the instances do not agree on the active task ${taskId} of ${cmd.agent} (owner ${owner.app.id}): ${JSON.stringify(statuses)}`)
        })
        const sample = { probe: index }
        owner.call.sink.push(sample)
        await waitFor(() => client.stream.events.some((event) => event.event === 'metrics' && event.data === JSON.stringify(sample)), 'the probe sample', 3000).catch(() => {
          throw report(`probe at step ${index}: the sample ${JSON.stringify(sample)} pushed through ${taskId} on ${owner.app.id} did not reach ${client.name} within 3 s; it got ${JSON.stringify(client.stream.events)}`)
        })
        trace.push(`  probe ok: ${taskId} on ${owner.app.id} reached ${client.name}`)
        break
      }
    }
  }

  const body = async (): Promise<void> => {
    apps = await Promise.all(instanceIds.map((instanceId) => startClusterApp(scope, { redis, instanceId, keyPrefix, leaseMs: LEASE_MS, stopDelayMs })))
    for (const [index, cmd] of commands.entries()) {
      await step(index, cmd)
      check(`after step ${index} (${cmd.kind})`)
    }

    // Everyone leaves: clients close, requests answer, every hold is released (on every instance).
    trace.push('end: closing every client, settling requests, stopping every hold')
    for (const client of clients) {
      if (!client.closedByUs) {
        client.closedByUs = true
        client.stream.close()
      }
    }
    await settlePending()
    check('after the requests settled')
    for (const id of agents) {
      for (const app of apps) send(`final stop ${id} on ${app.id}`, [200], () => app.json(`/agents/${id}/metrics/streaming/stop`, 'POST'))
      await settlePending()
    }
    check('after the final stops')

    type Status = { state: string, sse_clients: number, manual_hold: boolean, streaming_active: boolean, owner: string | null, task_id: string | null }
    let statuses: Array<[string, string, Status]> = []
    const quiet = async (): Promise<boolean> => {
      check('while waiting for quiet')
      if (liveTasks(apps).length > 0) return false
      statuses = []
      for (const app of apps) for (const id of agents) statuses.push([app.id, id, await app.status(id)])
      return statuses.every(([, , s]) => s.state === 'idle' && s.sse_clients === 0 && !s.manual_hold && !s.streaming_active && s.owner === null && s.task_id === null)
    }
    const leftAt = Date.now()
    await waitFor(quiet, 'quiet', QUIET_BOUND_MS).catch((err: Error) => {
      if (violations.length > 0) throw err
      throw report(`not quiet ${QUIET_BOUND_MS} ms after everyone left: live tasks [${liveTasks(apps).join(', ')}], statuses ${JSON.stringify(statuses.filter(([, , s]) => s.state !== 'idle' || s.sse_clients !== 0 || s.manual_hold))}`)
    })
    trace.push(`quiet after ${Date.now() - leftAt} ms`)
    // And it stays quiet: nothing restarts once demand is gone.
    const startCalls = apps.reduce((sum, app) => sum + app.adapter.startCalls.length, 0)
    await sleep(LEASE_MS / 2)
    check('after quiet')
    const later = apps.reduce((sum, app) => sum + app.adapter.startCalls.length, 0)
    if (later !== startCalls || liveTasks(apps).length > 0) throw report(`a start after the cluster went quiet: ${startCalls} then ${later} start calls, live [${liveTasks(apps).join(', ')}]`)
  }

  try {
    await within(body(), RUN_BOUND_MS, `run ${run}`).catch((err: Error) => {
      throw err.message.includes('--- trace') ? err : report(err.message)
    })
  } finally {
    if (TRACE) console.error(trace.join('\n'))
    for (const client of clients) client.stream.close()
    const problems = await close()
    if (problems.length > 0) console.error(`run ${run}: teardown problems: ${problems.join('; ')}`)
  }
}

const size = budget.minRuns === budget.maxRuns ? `${budget.maxRuns} runs` : `at least ${budget.minRuns} runs, up to ${budget.budgetMs / 1000} s`
const where = target === 'cluster' ? 'a 3-master Redis Cluster' : 'one redis-server'
t.test(`cluster mode under random schedules (three in-process instances, ${where}; ${size})${targetSuffix(target)}`, { skip }, async (t) => {
  const redis = await startRedisTarget(t, target)
  // Shrinking runs real schedules (seconds each): the hard limit stops it before the file's
  // timeout, and the smallest failure found so far is reported.
  const outcome = await assertWithinBudget(
    fc.asyncProperty(fc.array(command, { minLength: 10, maxLength: 25 }), fc.integer({ min: 0, max: 300 }), (commands, stopDelayMs) => runSchedule(redis, commands, stopDelayMs)),
    budget
  )
  t.ok(!outcome.interrupted && (replay || outcome.runs >= budget.minRuns), `${outcome.runs} schedules in ${outcome.elapsedMs} ms${outcome.interrupted ? ` (cut short by the ${TIME_LIMIT_MS} ms limit)` : ''}`)
})
