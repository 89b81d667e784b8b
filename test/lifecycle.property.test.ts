import fc from 'fast-check'
import t from 'tap'
import type { Subscription } from '../lib/index.js'
import { IDLE_HISTORY_TTL_MS } from '../lib/lifecycle/history-store.js'
import { lifecycleFixture } from './helpers/lifecycle-fixture.js'
import { drainMicrotasks, flush } from './helpers/manual-timers.js'
import { assertWithinBudget, envNumber, stress, type RunBudget } from './helpers/run-budget.js'
import type { StartCall } from './helpers/test-adapter.js'

// Random interleavings of everything that can happen to an agent's stream: clients
// connecting and leaving at different intervals, holds, cancels, agents answering,
// failing, timing out (and answering late), ending on their own, and time passing.
// In-place re-tunes that succeed, fail or hang, and close() in the middle of it all.
// After every step the counting invariants hold; each subscriber sees strictly increasing
// ids and at most one end; every hold settles; close() resolves; once everyone has left,
// all is idle with no timer left.
//
// By default as many schedules as fit in 15 s, and never fewer than 500 (a schedule takes about
// 5 ms, 10 ms under coverage); STRESS=1 (npm run test:stress) runs 10,000, PROPERTY_RUNS=n exactly
// n. Reproduce a failure with PROPERTY_SEED=<seed> PROPERTY_PATH=<path> (both printed by fast-check).

const EXPLICIT_RUNS = envNumber('PROPERTY_RUNS')
const FULL_RUNS = 10_000
const full = EXPLICIT_RUNS !== undefined || stress
/** Bounds runs and shrinking, so that a failure is reported before tap's timeout. */
const HARD_LIMIT_MS = full ? 25 * 60_000 : 90_000
const budget: RunBudget = {
  ...(full ? { minRuns: EXPLICIT_RUNS ?? FULL_RUNS, maxRuns: EXPLICIT_RUNS ?? FULL_RUNS, budgetMs: Infinity } : { minRuns: 500, maxRuns: FULL_RUNS, budgetMs: 15_000 }),
  hardLimitMs: HARD_LIMIT_MS,
  seed: envNumber('PROPERTY_SEED'),
  path: process.env.PROPERTY_PATH || undefined
}
const replay = budget.seed !== undefined || budget.path !== undefined
// Margin for a machine at half this one's speed.
t.setTimeout(HARD_LIMIT_MS + 30_000)

const STOP_DELAY_MS = 1000
const ADAPTER_TIMEOUT_MS = 3000
const agents = ['a1', 'a2'] as const
const agent = fc.constantFrom(...agents)
const outcome = fc.constantFrom('ok', 'ok', 'fail') // timeouts happen by not answering while time advances

type Command =
  | { kind: 'subscribe', agent: string, intervalSeconds: number }
  | { kind: 'unsubscribe', pick: number }
  | { kind: 'hold', agent: string, intervalSeconds: number }
  | { kind: 'release', agent: string }
  | { kind: 'advance', ms: number }
  | { kind: 'answerStart', pick: number, outcome: 'ok' | 'fail' }
  | { kind: 'answerStop', pick: number, outcome: 'ok' | 'fail' }
  | { kind: 'agentEnds', agent: string }
  | { kind: 'agentEndsEarly', agent: string }
  | { kind: 'agentFails', agent: string }
  | { kind: 'push', agent: string }
  | { kind: 'cancel', agent: string }
  | { kind: 'answerChange', pick: number, outcome: 'ok' | 'fail' }
  | { kind: 'close' }

const interval = fc.constantFrom(1, 2, 5)
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('subscribe' as const), agent, intervalSeconds: interval }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('unsubscribe' as const), pick: fc.nat(10) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hold' as const), agent, intervalSeconds: interval }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), agent }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(10, 500, 999, 1000, 1500, 3000, 4000) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('answerStart' as const), pick: fc.nat(3), outcome }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('answerStop' as const), pick: fc.nat(3), outcome }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('agentEnds' as const), agent }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('agentEndsEarly' as const), agent }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('agentFails' as const), agent }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('push' as const), agent }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), agent }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('answerChange' as const), pick: fc.nat(2), outcome }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const) }) }
)

async function runSchedule (commands: Command[], inPlaceRetune: boolean): Promise<void> {
  const { lifecycle, adapter, timers } = lifecycleFixture({ autoAnswer: false, stopDelayMs: STOP_DELAY_MS, adapterTimeoutMs: ADAPTER_TIMEOUT_MS, settle: drainMicrotasks })
  const changeCalls: Array<{ resolve: () => void, reject: (e: Error) => void, done: boolean }> = []
  if (inPlaceRetune) adapter.changeInterval = () => new Promise<void>((resolve, reject) => { changeCalls.push({ resolve, reject, done: false }) })
  const holdPromises: Array<{ settled: boolean, step: number }> = []
  const orderErrors: string[] = []
  let closedAt: { starts: number } | null = null
  let closeResolved = false
  const clients: Array<{ agent: string, sub: Subscription, gone: boolean }> = []
  const holds = new Set<string>()
  // The plugin's view of the agents: a task is live from its successful start until the
  // plugin issues its stop or the agent ends it.
  let startsOk = 0
  let ended = 0
  const live = new Map<string, string>() // taskId → agentId
  const endedEarly = new Set<StartCall>()
  const failed = new Set<StartCall>()
  const answeredStarts = new Set<StartCall>()
  const answeredStops = new Set<number>()
  const stopsSeen = new Set<string>()
  let stopsCounted = 0

  const noteStops = () => {
    for (; stopsCounted < adapter.stopCalls.length; stopsCounted++) {
      const { taskId } = adapter.stopCalls[stopsCounted]!
      if (stopsSeen.has(taskId)) throw new Error(`task ${taskId} stopped twice`)
      stopsSeen.add(taskId)
      if (!live.delete(taskId)) throw new Error(`stop of ${taskId}, which is not live`)
    }
  }
  const answerStart = (call: StartCall, result: 'ok' | 'fail') => {
    answeredStarts.add(call)
    if (result === 'fail') {
      call.answer.reject(new Error('refused'))
      return
    }
    startsOk++
    if (endedEarly.has(call)) ended++
    else live.set(call.taskId, call.agentId)
    call.answer.resolve({ taskId: call.taskId })
  }
  const holdChanged = (id: string, held: boolean) => { if (held) holds.add(id); else holds.delete(id) }

  const check = (step: string) => {
    noteStops()
    const perAgent = new Map<string, number>()
    for (const id of live.values()) perAgent.set(id, (perAgent.get(id) ?? 0) + 1)
    for (const [id, count] of perAgent) if (count > 1) throw new Error(`${step}: ${count} live streams for ${id}`)
    if (startsOk !== stopsSeen.size + ended + live.size) throw new Error(`${step}: starts ${startsOk} != stops ${stopsSeen.size} + ended ${ended} + live ${live.size}`)
    for (const id of agents) {
      const status = lifecycle.status(id)
      const clientsOfAgent = clients.filter((c) => c.agent === id && !c.gone).length
      if (status.subscribers !== clientsOfAgent) throw new Error(`${step}: ${id} subscribers ${status.subscribers} != ${clientsOfAgent}`)
      holdChanged(id, status.manualHold)
      if (status.streamingActive !== (status.state !== 'idle')) throw new Error(`${step}: streamingActive disagrees with state`)
      const demand = clientsOfAgent > 0 || status.manualHold
      if (closedAt && (clientsOfAgent > 0 || status.manualHold)) throw new Error(`${step}: demand after close`)
      if (demand && !status.streamingActive) throw new Error(`${step}: ${id} has demand but is idle`)
      if (status.state === 'lingering' && demand) throw new Error(`${step}: ${id} lingers with demand`)
      if (status.state === 'active' && !demand) throw new Error(`${step}: ${id} active without demand`)
      if ((status.state === 'active' || status.state === 'lingering') && live.get(status.taskId ?? '') !== id) {
        throw new Error(`${step}: ${id} is ${status.state} but its task ${status.taskId} is not live`)
      }
    }
  }

  for (const [index, cmd] of commands.entries()) {
    const pending = (calls: StartCall[]) => calls.filter((c) => !answeredStarts.has(c))
    switch (cmd.kind) {
      case 'close': {
        if (!closedAt) { closedAt = { starts: adapter.startCalls.length }; lifecycle.close().then(() => { closeResolved = true }) }
        break
      }
      case 'subscribe': {
        if (closedAt) break
        const entry = { agent: cmd.agent, sub: null as unknown as Subscription, gone: false }
        const gone = () => { entry.gone = true }
        let lastId = 0
        let endedAlready = false
        const gone2 = () => { if (endedAlready) orderErrors.push(`step ${index}: end/error delivered twice`); endedAlready = true; gone() }
        entry.sub = lifecycle.subscribe(cmd.agent, { intervalSeconds: cmd.intervalSeconds, onSample (_s, id) { if (id <= lastId) orderErrors.push(`step ${index}: id ${id} after ${lastId}`); if (endedAlready) orderErrors.push('sample after end'); lastId = id }, onEnd: gone2, onError: gone2 })
        clients.push(entry)
        break
      }
      case 'unsubscribe': {
        const entry = clients.filter((c) => !c.gone)[cmd.pick]
        if (entry) { entry.gone = true; entry.sub.unsubscribe() }
        break
      }
      case 'hold':
        if (closedAt) break
        { const h = { settled: false, step: index }; holdPromises.push(h); lifecycle.hold(cmd.agent, { intervalSeconds: cmd.intervalSeconds }).then(() => { h.settled = true }, () => { h.settled = true }) }
        break
      case 'release':
        await lifecycle.release(cmd.agent)
        break
      case 'advance':
        await timers.advance(cmd.ms)
        break
      case 'answerStart': {
        const call = pending(adapter.startCalls)[cmd.pick]
        if (call) answerStart(call, cmd.outcome)
        break
      }
      case 'answerStop': {
        const open = adapter.stopCalls.map((call, i) => ({ call, i })).filter(({ i }) => !answeredStops.has(i))
        const chosen = open[cmd.pick]
        if (chosen) {
          answeredStops.add(chosen.i)
          if (cmd.outcome === 'ok') chosen.call.answer.resolve()
          else chosen.call.answer.reject(new Error('stop failed'))
        }
        break
      }
      case 'agentEnds': {
        const taskId = [...live].reverse().find(([, id]) => id === cmd.agent)?.[0]
        const call = adapter.startCalls.find((c) => c.taskId === taskId)
        if (taskId && call) {
          live.delete(taskId)
          ended++
          call.sink.end('agent-offline')
        }
        break
      }
      case 'agentEndsEarly': {
        const call = pending(adapter.startCalls).filter((c) => c.agentId === cmd.agent).at(-1)
        // Once the transport reported an error the plugin stops the task, whatever the agent says next.
        if (call && !call.signal.aborted && !endedEarly.has(call) && !failed.has(call)) {
          endedEarly.add(call)
          call.sink.end('agent-offline')
        }
        break
      }
      case 'agentFails': {
        const call = adapter.startCalls.filter((c) => c.agentId === cmd.agent).at(-1)
        if (call) {
          failed.add(call)
          call.sink.error(new Error('transport'))
        }
        break
      }
      case 'answerChange': {
        const c = changeCalls.filter((x) => !x.done)[cmd.pick]
        if (c) { c.done = true; if (cmd.outcome === 'ok') c.resolve(); else c.reject(new Error('change failed')) }
        break
      }
      case 'push':
        adapter.startCalls.filter((c) => c.agentId === cmd.agent).at(-1)?.sink.push({ n: index })
        break
      case 'cancel': {
        const taskId = lifecycle.status(cmd.agent).taskId
        if (taskId) lifecycle.cancelTask(taskId).catch(() => {})
        break
      }
    }
    await drainMicrotasks()
    check(`step ${index} (${cmd.kind})`)
  }

  // Everyone leaves; every agent answers what is still pending; time passes.
  for (const entry of clients) { entry.gone = true; entry.sub.unsubscribe() }
  for (const id of agents) await lifecycle.release(id)
  for (let round = 0; round < 12; round++) {
    for (const call of adapter.startCalls.filter((c) => !answeredStarts.has(c))) answerStart(call, 'ok')
    for (const c of changeCalls) if (!c.done) { c.done = true; c.resolve() }
    adapter.stopCalls.forEach((call, i) => { if (!answeredStops.has(i)) { answeredStops.add(i); call.answer.resolve() } })
    await timers.advance(ADAPTER_TIMEOUT_MS + STOP_DELAY_MS)
    check(`settling round ${round}`)
  }
  for (const id of agents) {
    const { state } = lifecycle.status(id)
    if (state !== 'idle') throw new Error(`${id} is ${state} after everyone left`)
  }
  if (live.size !== 0) throw new Error(`leaked tasks: ${[...live.keys()].join(', ')}`)
  // Idle agents keep their replay history for IDLE_HISTORY_TTL_MS (one expiry timer): past it nothing is left.
  await timers.advance(IDLE_HISTORY_TTL_MS)
  for (const id of agents) if (lifecycle.lastEventId(id) !== 0) throw new Error(`${id}'s history outlived IDLE_HISTORY_TTL_MS`)
  if (timers.pendingCount !== 0) throw new Error(`${timers.pendingCount} timers left behind`)
  if (lifecycle.list().length !== 0) throw new Error('list() is not empty')
  if (closedAt && !closeResolved) throw new Error('close() from the schedule never resolved')
  if (closedAt && adapter.startCalls.length > closedAt.starts) throw new Error(`start issued after close: ${adapter.startCalls.length} > ${closedAt.starts}`)
  if (orderErrors.length) throw new Error(orderErrors.join('; '))
  const hung = holdPromises.filter((h) => !h.settled)
  if (hung.length) throw new Error(`hold() from step ${hung.map((h) => h.step).join(',')} never settled`)
  let closed = false
  lifecycle.close().then(() => { closed = true })
  await timers.advance(ADAPTER_TIMEOUT_MS * 2)
  if (!closed) throw new Error('close() did not resolve')
}

const size = budget.minRuns === budget.maxRuns ? `${budget.maxRuns}` : `at least ${budget.minRuns} (up to ${budget.budgetMs / 1000} s)`
t.test(`${size} random schedules: one live stream per agent, starts = stops + ends + live, exact counts, idle at the end`, async (t) => {
  const { runs, elapsedMs, interrupted } = await assertWithinBudget(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 40 }), fc.boolean(), runSchedule), budget)
  t.ok(!interrupted && (replay || runs >= budget.minRuns), `${runs} schedules in ${elapsedMs} ms${interrupted ? ` (cut short by the ${HARD_LIMIT_MS} ms limit)` : ''}`)
  await flush()
})
