import t from 'tap'
import { lifecycleFixture, recorder } from './helpers/lifecycle-fixture.js'
import { flush } from './helpers/manual-timers.js'

const ids = (r: ReturnType<typeof recorder>) => r.received.samples.map((s) => s.eventId)

for (const inPlace of [false, true]) {
  const how = inPlace ? 'with changeInterval' : 'by stop+start'

  t.test(`clients at 1 s and 5 s share one stream at 1 s; the 5 s client gets every 5th; re-tuned to 5 s ${how} when the 1 s client leaves`, async (t) => {
    const { lifecycle, adapter } = lifecycleFixture()
    const changes = inPlace ? adapter.enableChangeInterval() : []
    const slow = recorder(5)
    const fast = recorder(1)
    const fastSub = lifecycle.subscribe('agent1', fast.options)
    lifecycle.subscribe('agent1', slow.options)
    await flush()
    t.equal(adapter.startCalls.length, 1, 'one start')
    t.equal(adapter.startCalls[0]!.intervalSeconds, 1, 'the agent runs at the smallest interval')
    t.match(lifecycle.status('agent1'), { intervalSeconds: 1, requestedIntervals: [1, 5], subscribers: 2 })
    t.same(changes, [], 'nothing to re-tune')
    for (let i = 0; i < 20; i++) adapter.push('agent1', { i })
    t.equal(fast.received.samples.length, 20, 'k = 1: every sample')
    t.same(ids(slow), [1, 6, 11, 16], 'k = 5: the first after joining, then every 5th')

    fastSub.unsubscribe()
    await flush()
    t.equal(lifecycle.status('agent1').intervalSeconds, 5, 're-tuned to 5 s')
    t.same(lifecycle.status('agent1').requestedIntervals, [5])
    if (inPlace) {
      t.same(changes, [{ agentId: 'agent1', taskId: 'task-1', intervalSeconds: 5 }])
      t.equal(adapter.startCalls.length, 1)
      t.equal(adapter.stopCalls.length, 0)
    } else {
      t.same(adapter.stopCalls.map((c) => c.taskId), ['task-1'])
      t.equal(adapter.startCalls.length, 2)
      t.equal(adapter.startCalls[1]!.intervalSeconds, 5)
      t.equal(adapter.liveTasks.size, 1, 'exactly one live stream')
      t.equal(adapter.maxConcurrentPerAgent, 1, 'never two streams')
    }
    adapter.push('agent1', { i: 20 })
    adapter.push('agent1', { i: 21 })
    t.same(ids(slow).slice(4), [21, 22], 'now k = 1 for the 5 s client')
  })

  t.test(`a fast client joining a slow stream re-tunes it at once (${how}), even while the start is in flight`, async (t) => {
    const { lifecycle, adapter } = lifecycleFixture()
    const changes = inPlace ? adapter.enableChangeInterval() : []
    lifecycle.subscribe('agent1', recorder(5).options)
    lifecycle.subscribe('agent1', recorder(2).options)
    t.equal(adapter.startCalls[0]!.intervalSeconds, 5)
    await flush()
    t.equal(lifecycle.status('agent1').intervalSeconds, 2)
    if (inPlace) t.same(changes.map((c) => c.intervalSeconds), [2])
    else t.same(adapter.startCalls.map((c) => c.intervalSeconds), [5, 2])
    lifecycle.subscribe('agent1', recorder(1).options)
    await flush()
    t.equal(lifecycle.status('agent1').intervalSeconds, 1)
    t.equal(adapter.maxConcurrentPerAgent, 1)
    t.equal(adapter.liveTasks.size, 1)
  })

  t.test(`a hold with a new interval re-tunes the stream, and releasing it re-tunes back (${how})`, async (t) => {
    const { lifecycle, adapter } = lifecycleFixture()
    if (inPlace) adapter.enableChangeInterval()
    lifecycle.subscribe('agent1', recorder(10).options)
    await flush()
    t.equal(lifecycle.status('agent1').intervalSeconds, 10)
    await lifecycle.hold('agent1', { intervalSeconds: 2 })
    await flush()
    t.match(lifecycle.status('agent1'), { intervalSeconds: 2, requestedIntervals: [2, 10], manualHold: true })
    await lifecycle.hold('agent1', { intervalSeconds: 4 })
    await flush()
    t.match(lifecycle.status('agent1'), { intervalSeconds: 4, requestedIntervals: [4, 10] }, 'a repeated hold updates its interval')
    await lifecycle.release('agent1')
    await flush()
    t.match(lifecycle.status('agent1'), { intervalSeconds: 10, requestedIntervals: [10], manualHold: false, state: 'active' })
    t.equal(adapter.maxConcurrentPerAgent, 1)
  })
}

t.test('a failing changeInterval falls back to stop+start', async (t) => {
  const { lifecycle, adapter, logger } = lifecycleFixture()
  const changes = adapter.enableChangeInterval(new Error('not supported by this agent'))
  lifecycle.subscribe('agent1', recorder(5).options)
  await flush()
  lifecycle.subscribe('agent1', recorder(1).options)
  await flush()
  t.equal(changes.length, 1)
  t.equal(adapter.stopCalls.length, 1)
  t.equal(adapter.startCalls.at(-1)!.intervalSeconds, 1)
  t.equal(lifecycle.status('agent1').intervalSeconds, 1)
  t.ok(logger.messages().some((m) => m.includes('changeInterval failed')))
})

t.test('no re-tune while the changeInterval call is in flight; demand is re-checked when it settles', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture()
  const calls: number[] = []
  let answer!: () => void
  adapter.changeInterval = (_a, _t, intervalSeconds) => {
    calls.push(intervalSeconds)
    return new Promise<void>((resolve) => { answer = resolve })
  }
  lifecycle.subscribe('agent1', recorder(10).options)
  await flush()
  lifecycle.subscribe('agent1', recorder(5).options)
  lifecycle.subscribe('agent1', recorder(2).options)
  await flush()
  t.same(calls, [5], 'one call in flight')
  answer()
  await flush()
  t.same(calls, [5, 2], 'then the newest minimum')
  answer()
  await flush()
  t.equal(lifecycle.status('agent1').intervalSeconds, 2)
})

t.test('a late subscriber gets the newest sample at once if it is younger than its interval', async (t) => {
  const { lifecycle, adapter, timers } = lifecycleFixture()
  lifecycle.subscribe('agent1', recorder(1).options)
  await flush()
  adapter.push('agent1', { n: 1 })
  adapter.push('agent1', { n: 2 })
  await timers.advance(1500)
  const young = recorder(2)
  lifecycle.subscribe('agent1', young.options)
  t.same(young.received.samples, [{ sample: { n: 2 }, eventId: 2 }], 'the newest, with its id')
  const old = recorder(1)
  lifecycle.subscribe('agent1', old.options)
  t.same(old.received.samples, [], 'older than the interval: wait for the next')
  // The 2 s client on a 1 s stream: the latest counted as its first, so the next comes 2 samples later.
  adapter.push('agent1', { n: 3 })
  adapter.push('agent1', { n: 4 })
  t.same(ids(young), [2, 4], 'never twice, then every 2nd')
  t.same(ids(old), [3, 4])
})

t.test('Last-Event-ID: replay of exactly the missed samples, in order, whatever k', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture()
  lifecycle.subscribe('agent1', recorder(1).options)
  await flush()
  for (let i = 1; i <= 10; i++) adapter.push('agent1', { i })
  const back = recorder(5)
  lifecycle.subscribe('agent1', { ...back.options, lastEventId: 6 })
  t.same(ids(back), [7, 8, 9, 10], 'replay is not down-sampled')
  adapter.push('agent1', { i: 11 })
  t.same(ids(back), [7, 8, 9, 10, 11], 'the first live sample after joining')

  const current = recorder(1)
  lifecycle.subscribe('agent1', { ...current.options, lastEventId: 11 })
  t.same(ids(current), [], 'an id equal to the newest sends nothing again')

  const future = recorder(60)
  lifecycle.subscribe('agent1', { ...future.options, lastEventId: 999 })
  t.same(ids(future), [11], 'an id above any issued is treated as absent (then the latest rule applies)')
})

t.test('Last-Event-ID older than the replay buffer: a gap, then only the newest sample', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture()
  lifecycle.subscribe('agent1', recorder(1).options)
  await flush()
  for (let i = 1; i <= 40; i++) adapter.push('agent1', { i })
  const gaps: unknown[] = []
  const back = recorder(1)
  lifecycle.subscribe('agent1', { ...back.options, lastEventId: 3, onGap: (info) => gaps.push(info) })
  t.same(gaps, [{ missed: 36, lastEventId: 3 }], 'samples 4..39 are not sent')
  t.same(ids(back), [40])
  const edge = recorder(1)
  const edgeGaps: unknown[] = []
  lifecycle.subscribe('agent1', { ...edge.options, lastEventId: 24, onGap: (info) => edgeGaps.push(info) })
  t.same(ids(edge), [25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40], 'the whole ring of 16 is still held')
  t.same(edgeGaps, [])
  const zero = recorder(1)
  lifecycle.subscribe('agent1', { ...zero.options, lastEventId: 0, onGap: (info) => gaps.push(info) })
  t.same(gaps.at(-1), { missed: 39, lastEventId: 0 })
})

t.test('ids and replay survive the agent stream stopping and starting again', async (t) => {
  const { lifecycle, adapter, timers } = lifecycleFixture()
  const first = lifecycle.subscribe('agent1', recorder(1).options)
  await flush()
  adapter.push('agent1', { i: 1 })
  adapter.push('agent1', { i: 2 })
  first.unsubscribe()
  await timers.advance(2000)
  t.equal(lifecycle.status('agent1').state, 'idle')
  const back = recorder(1)
  lifecycle.subscribe('agent1', { ...back.options, lastEventId: 1 })
  t.same(ids(back), [2], 'replayed from the held history while the stream restarts')
  await flush()
  adapter.push('agent1', { i: 3 })
  t.same(ids(back), [2, 3], 'ids continue after the restart')
})

t.test('a replay buffer size option bounds what is held', async (t) => {
  const { TestAdapter } = await import('./helpers/test-adapter.js')
  const { StreamLifecycle } = await import('../lib/index.js')
  const adapter = new TestAdapter()
  const lifecycle = new StreamLifecycle({ adapter, replayBufferSize: 2 })
  lifecycle.subscribe('a', recorder(1).options)
  await flush()
  for (let i = 1; i <= 5; i++) adapter.push('a', { i })
  const gaps: unknown[] = []
  const back = recorder(1)
  lifecycle.subscribe('a', { ...back.options, lastEventId: 2, onGap: (info) => gaps.push(info) })
  t.same(gaps, [{ missed: 2, lastEventId: 2 }])
  t.same(ids(back), [5])
  t.throws(() => new StreamLifecycle({ adapter, replayBufferSize: 0 }), { message: /"replayBufferSize"/ })
  await lifecycle.close()
})

t.test('a hold that re-tunes the stream by a restart answers once the restarted stream is active', async (t) => {
  const { lifecycle, adapter } = lifecycleFixture({ autoAnswer: false })
  lifecycle.subscribe('agent1', recorder(10).options)
  adapter.startCalls[0]!.answer.resolve({ taskId: 'task-1' })
  await flush()
  let answered = false
  const held = lifecycle.hold('agent1', { intervalSeconds: 2 }).then((status) => { answered = true; return status })
  await flush()
  t.equal(lifecycle.status('agent1').state, 'stopping')
  adapter.stopCalls[0]!.answer.resolve()
  await flush()
  t.equal(answered, false, 'not while the new start is in flight')
  adapter.startCalls[1]!.answer.resolve({ taskId: 'task-2' })
  t.match(await held, { state: 'active', taskId: 'task-2', intervalSeconds: 2, manualHold: true })
})
