import fc from 'fast-check'
import t from 'tap'
import type { Subscription } from '../lib/index.js'
import { lifecycleFixture } from './helpers/lifecycle-fixture.js'
import { flush } from './helpers/manual-timers.js'

// Random schedules of connects, disconnects, holds, agent answers, failures, agent-side
// ends and cancellations. Whatever the order, an agent never has two live tasks, the
// client count is exact, and once everyone has left nothing is left running.

const agents = ['a1', 'a2'] as const
const agent = fc.constantFrom(...agents)

type Command =
  | { kind: 'subscribe', agent: string, intervalSeconds: number }
  | { kind: 'unsubscribe', pick: number }
  | { kind: 'hold', agent: string }
  | { kind: 'release', agent: string }
  | { kind: 'advance', ms: number }
  | { kind: 'answerStart', ok: boolean }
  | { kind: 'answerStop' }
  | { kind: 'agentEnds', agent: string }
  | { kind: 'agentFails', agent: string }
  | { kind: 'cancel', agent: string }

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(agent, fc.constantFrom(1, 2, 5)).map(([a, intervalSeconds]) => ({ kind: 'subscribe' as const, agent: a, intervalSeconds })) },
  { weight: 4, arbitrary: fc.nat(20).map((pick) => ({ kind: 'unsubscribe' as const, pick })) },
  { weight: 1, arbitrary: agent.map((a) => ({ kind: 'hold' as const, agent: a })) },
  { weight: 1, arbitrary: agent.map((a) => ({ kind: 'release' as const, agent: a })) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 2500 }).map((ms) => ({ kind: 'advance' as const, ms })) },
  { weight: 3, arbitrary: fc.boolean().map((ok) => ({ kind: 'answerStart' as const, ok })) },
  { weight: 3, arbitrary: fc.constant({ kind: 'answerStop' as const }) },
  { weight: 1, arbitrary: agent.map((a) => ({ kind: 'agentEnds' as const, agent: a })) },
  { weight: 1, arbitrary: agent.map((a) => ({ kind: 'agentFails' as const, agent: a })) },
  { weight: 1, arbitrary: agent.map((a) => ({ kind: 'cancel' as const, agent: a })) }
)

t.test('no schedule leaks a stream or miscounts clients', async (t) => {
  await fc.assert(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 60 }), fc.boolean(), async (commands, inPlaceRetune) => {
    const { lifecycle, adapter, timers } = lifecycleFixture({ autoAnswer: false, stopDelayMs: 2000, adapterTimeoutMs: 1e9 })
    if (inPlaceRetune) adapter.enableChangeInterval()
    const live: Array<{ agent: string, sub: Subscription, gone: boolean }> = []
    let answeredStarts = 0
    let answeredStops = 0

    const check = () => {
      if (adapter.maxConcurrentPerAgent > 1) throw new Error('two live tasks for one agent')
      for (const id of agents) {
        const expected = live.filter((entry) => entry.agent === id && !entry.gone).length
        const status = lifecycle.status(id)
        if (status.sse_clients !== expected) throw new Error(`${id}: sse_clients ${status.sse_clients} != ${expected}`)
        if (status.streaming_active !== (status.state !== 'idle')) throw new Error('streaming_active disagrees with state')
        if (status.state === 'idle' && (status.sse_clients > 0 || status.manual_hold)) throw new Error(`${id}: idle with demand`)
      }
    }

    for (const cmd of commands) {
      switch (cmd.kind) {
        case 'subscribe': {
          const entry = { agent: cmd.agent, sub: null as unknown as Subscription, gone: false }
          const gone = () => { entry.gone = true }
          entry.sub = lifecycle.subscribe(cmd.agent, { intervalSeconds: cmd.intervalSeconds, onSample () {}, onEnd: gone, onError: gone })
          live.push(entry)
          break
        }
        case 'unsubscribe': {
          const entry = live.filter((e) => !e.gone)[cmd.pick]
          if (entry) { entry.sub.unsubscribe(); entry.gone = true }
          break
        }
        case 'hold':
          lifecycle.hold(cmd.agent, { intervalSeconds: 5 }).catch(() => {})
          break
        case 'release':
          await lifecycle.release(cmd.agent)
          break
        case 'advance':
          await timers.advance(cmd.ms)
          break
        case 'answerStart': {
          const call = adapter.startCalls[answeredStarts]
          if (call) {
            answeredStarts++
            if (cmd.ok) call.answer.resolve({ taskId: call.taskId })
            else call.answer.reject(new Error('refused'))
          }
          break
        }
        case 'answerStop': {
          const call = adapter.stopCalls[answeredStops]
          if (call) { answeredStops++; call.answer.resolve() }
          break
        }
        case 'agentEnds': {
          const call = adapter.startCalls.filter((c) => c.agentId === cmd.agent).at(-1)
          if (call && adapter.liveTasks.has(call.taskId)) adapter.endTask(cmd.agent, 'agent-offline')
          break
        }
        case 'agentFails':
          adapter.startCalls.filter((c) => c.agentId === cmd.agent).at(-1)?.sink.error(new Error('transport'))
          break
        case 'cancel': {
          const taskId = lifecycle.status(cmd.agent).task_id
          if (taskId) lifecycle.cancelTask(taskId).catch(() => {})
          break
        }
      }
      await flush()
      check()
    }

    // Everyone leaves; the agents answer whatever is still pending.
    for (const entry of live) { entry.sub.unsubscribe(); entry.gone = true }
    for (const id of agents) await lifecycle.release(id)
    for (let round = 0; round < 20; round++) {
      while (answeredStarts < adapter.startCalls.length) {
        const call = adapter.startCalls[answeredStarts++]!
        call.answer.resolve({ taskId: call.taskId })
      }
      while (answeredStops < adapter.stopCalls.length) adapter.stopCalls[answeredStops++]!.answer.resolve()
      await timers.advance(2500)
    }
    check()
    for (const id of agents) {
      if (lifecycle.status(id).state !== 'idle') throw new Error(`${id} is ${lifecycle.status(id).state} after everyone left`)
    }
    if (adapter.liveTasks.size !== 0) throw new Error(`leaked tasks: ${[...adapter.liveTasks.keys()].join(', ')}`)
    if (timers.pendingCount !== 0) throw new Error('a timer was left behind')
    const stopped = adapter.stopCalls.map((c) => c.taskId)
    if (new Set(stopped).size !== stopped.length) throw new Error('a task was stopped twice')
    if (lifecycle.list().length !== 0) throw new Error('list() is not empty')
  }), { numRuns: 300 })
  t.pass('300 random schedules held every invariant')
})
