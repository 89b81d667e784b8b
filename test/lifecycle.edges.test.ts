import t from 'tap'
import { lifecycleFixture, recorder } from './helpers/lifecycle-fixture.js'
import { flush } from './helpers/manual-timers.js'

// Schedules found by an independent review; each one used to hang, loop or double-send.

t.test('a hold placed while a stop is in flight and released before it settles is answered (409), not left hanging', async (t) => {
  const { lifecycle, adapter, timers } = lifecycleFixture({ autoAnswer: false, stopDelayMs: 100 })
  const sub = lifecycle.subscribe('x', recorder(5).options)
  adapter.startCalls[0]!.answer.resolve({ taskId: 't1' })
  await flush()
  sub.unsubscribe()
  await timers.advance(100)
  t.equal(lifecycle.status('x').state, 'stopping')
  const held = t.rejects(lifecycle.hold('x', { intervalSeconds: 5 }), { statusCode: 409, code: 'FST_ERR_AGENT_SSE_HOLD_ENDED' })
  await lifecycle.release('x')
  adapter.stopCalls[0]!.answer.resolve()
  await held
  t.equal(lifecycle.status('x').state, 'idle')
  t.equal(adapter.startCalls.length, 1, 'no start for a released hold')
  t.same(lifecycle.list(), [])
})

t.test('a hold whose adapter ends the stream synchronously inside startMetricsStreaming is answered', async (t) => {
  const { lifecycle, adapter, timers } = lifecycleFixture()
  const original = adapter.startMetricsStreaming.bind(adapter)
  adapter.startMetricsStreaming = (id, options, sink) => {
    const started = original(id, options, sink)
    sink.end('agent-offline')
    return started
  }
  const held = t.rejects(lifecycle.hold('x', { intervalSeconds: 5 }), { statusCode: 409, code: 'FST_ERR_AGENT_SSE_HOLD_ENDED' })
  await timers.advance(1000)
  await held
  t.equal(lifecycle.status('x').state, 'idle')
  t.equal(adapter.stopCalls.length, 0, 'the agent ended it: no stop')
})

t.test('subscribing again from a server-shutdown callback is refused, and close() resolves', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture({ stopDelayMs: 100, adapterTimeoutMs: 1000 })
  const refusals: unknown[] = []
  lifecycle.subscribe('x', {
    intervalSeconds: 5,
    onSample () {},
    onEnd () {
      try {
        lifecycle.subscribe('x', { intervalSeconds: 5, onSample () {} })
      } catch (err) {
        refusals.push(err)
      }
    }
  })
  await flush()
  await lifecycle.close()
  t.match(refusals, [{ code: 'FST_ERR_AGENT_SSE_CLOSED' }])
  t.equal(adapter.startCalls.length, 1)
  t.equal(adapter.stopCalls.length, 1)
  t.equal(lifecycle.status('x').subscribers, 0)
})

t.test('close() aborts the signal of a start in flight', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture({ autoAnswer: false })
  lifecycle.subscribe('x', recorder(5).options)
  const closing = lifecycle.close()
  t.ok(adapter.startCalls[0]!.signal.aborted, 'the adapter is told at once')
  adapter.startCalls[0]!.answer.reject(new Error('aborted'))
  await closing
  t.equal(lifecycle.status('x').state, 'idle')
})

t.test('stopOrphans leaves alone the task of a start still in flight, and tells agents apart by id', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture({ autoAnswer: false })
  const reported = [{ agentId: 'x', taskId: 'task-1' }, { agentId: 'y', taskId: 'task-1' }]
  Object.assign(adapter, { listStreamingTasks: async () => reported })
  lifecycle.subscribe('x', recorder(1).options)
  const orphans = lifecycle.stopOrphans()
  await flush()
  adapter.stopCalls[0]!.answer.resolve()
  t.same(await orphans, [{ agentId: 'y', taskId: 'task-1' }], "only y's task-1: x's start is still in flight")
  adapter.startCalls[0]!.answer.resolve({ taskId: 'task-1' })
  await flush()
  t.equal(lifecycle.status('x').state, 'active')
  t.same(adapter.stopCalls.map((c) => [c.agentId, c.taskId]), [['y', 'task-1']])
})

t.test('a changeInterval that fails while lingering leaves the stop to the grace window', async (t) => {
  const { lifecycle, adapter, timers } = lifecycleFixture({ stopDelayMs: 2000 })
  let failChange!: (err: Error) => void
  adapter.changeInterval = () => new Promise((_resolve, reject) => { failChange = reject })
  const slow = lifecycle.subscribe('x', recorder(5).options)
  await flush()
  const fast = lifecycle.subscribe('x', recorder(1).options)
  await flush()
  fast.unsubscribe()
  slow.unsubscribe()
  t.equal(lifecycle.status('x').state, 'lingering')
  failChange(new Error('nope'))
  await flush()
  t.equal(adapter.stopCalls.length, 0, 'no stop inside the window')
  lifecycle.subscribe('x', recorder(5).options)
  await timers.advance(100)
  t.equal(adapter.startCalls.length, 1, 'a returning client reuses the stream')
  t.equal(lifecycle.status('x').state, 'active')
})

t.test('a subscriber joining from inside a fan-out never gets the same event twice', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture()
  const late = recorder(1)
  let joined = false
  lifecycle.subscribe('x', {
    intervalSeconds: 1,
    onSample () {
      if (!joined) {
        joined = true
        lifecycle.subscribe('x', late.options)
      }
    }
  })
  await flush()
  adapter.push('x', { n: 1 })
  adapter.push('x', { n: 2 })
  t.same(late.received.samples.map((s) => s.eventId), [1, 2], 'the latest on joining, then the next: each once')
})

t.test('the standalone API refuses intervals that are not positive numbers', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture()
  for (const bad of [0, -1, Number.NaN, Infinity, '5', undefined]) {
    t.throws(() => lifecycle.subscribe('x', { intervalSeconds: bad as number, onSample () {} }), { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION', message: /"intervalSeconds"/ })
    await t.rejects(lifecycle.hold('x', { intervalSeconds: bad as number }), { code: 'FST_ERR_AGENT_SSE_INVALID_OPTION' })
  }
  t.equal(adapter.startCalls.length, 0)
})

t.test('the start signal aborts when the agent ends its task itself (active, or before its start answered)', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture({ autoAnswer: false })
  lifecycle.subscribe('live', recorder(5).options)
  adapter.startCalls[0]!.answer.resolve({ taskId: 't1' })
  await flush()
  t.equal(lifecycle.status('live').state, 'active')
  t.notOk(adapter.startCalls[0]!.signal.aborted)
  adapter.startCalls[0]!.sink.end('agent-offline')
  t.ok(adapter.startCalls[0]!.signal.aborted, 'aborted when an active task is ended by the agent')
  t.equal(lifecycle.status('live').state, 'idle')

  lifecycle.subscribe('early', recorder(5).options)
  const early = adapter.startCalls[1]!
  early.sink.end('agent-offline')
  t.notOk(early.signal.aborted, 'the start is still in flight: its answer is awaited first')
  early.answer.resolve({ taskId: 't2' })
  await flush()
  t.ok(early.signal.aborted, 'aborted once the start answered for a task the agent already ended')
  t.equal(adapter.stopsFor('early'), 0, 'and never stopped: the agent ended it')
  await lifecycle.close()
})
