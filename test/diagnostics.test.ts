// The diagnostics channels, as an APM or a metrics exporter sees them: subscribed by name,
// with a real server and real sockets.
import { AsyncLocalStorage } from 'node:async_hooks'
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel'
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { diagnosticsChannels, type AdapterCallContext } from '../lib/diagnostics.js'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

interface Published {
  /** The channel name without the package prefix: `stream:started`, `client:connected`, … */
  name: string
  message: Record<string, unknown>
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Every message of the plain channels, in publication order, until the test ends. */
function recordChannels (t: Test): Published[] {
  const published: Published[] = []
  const names = Object.values(diagnosticsChannels).filter((name) => name !== diagnosticsChannels.adapterCall)
  const listener = (message: unknown, name: string | symbol) => {
    published.push({ name: String(name).replace('fastify-agent-sse:', ''), message: message as Record<string, unknown> })
  }
  for (const name of names) subscribe(name, listener)
  t.teardown(() => { for (const name of names) unsubscribe(name, listener) })
  return published
}

const named = (published: Published[], ...names: string[]) => published.filter((event) => names.includes(event.name))
const sequence = (published: Published[]) => published.map((event) => event.name)

t.test('a client\'s life on the channels: connected, started, disconnected, then stopped after stopDelayMs, with plain data', async (t) => {
  const published = recordChannels(t)
  const { sse, adapter } = await startServer(t, { stopDelayMs: 50 })
  const client = await sse('/agents/agent1/metrics/stream?interval_seconds=5')
  await waitFor(() => named(published, 'stream:started').length === 1, 'the start')
  const [connected, started] = published
  t.same(connected, {
    name: 'client:connected',
    message: { clientId: connected!.message.clientId, agentIds: ['agent1'], fleet: false, intervalSeconds: 5, lastEventId: null, remoteAddress: '127.0.0.1' }
  })
  t.type(connected!.message.clientId, 'string')
  t.same(started, { name: 'stream:started', message: { agentId: 'agent1', taskId: 'task-1', intervalSeconds: 5 } })

  client.close()
  await waitFor(() => named(published, 'stream:stopped').length === 1, 'the stop')
  t.same(sequence(published), ['client:connected', 'stream:started', 'client:disconnected', 'stream:stopped'])
  t.same(published[2]!.message, { clientId: connected!.message.clientId, agentIds: ['agent1'], fleet: false })
  t.same(published[3]!.message, { agentId: 'agent1', taskId: 'task-1', reason: 'no-demand', endReason: null, error: null })
  t.equal(adapter.liveTasks.size, 0)
  t.doesNotThrow(() => JSON.stringify(published), 'no socket, request or adapter in a message')
})

t.test('a fleet connection is one connected and one disconnected message, flagged fleet, with a started and a stopped per agent', async (t) => {
  const published = recordChannels(t)
  const { sse } = await startServer(t, { stopDelayMs: 50 })
  const fleet = await sse('/metrics/stream?agents=a1,a2&interval_seconds=2')
  await waitFor(() => named(published, 'stream:started').length === 2, 'both starts')
  t.match(named(published, 'client:connected'), [{ message: { agentIds: ['a1', 'a2'], fleet: true, intervalSeconds: 2, lastEventId: null } }])
  fleet.close()
  await waitFor(() => named(published, 'stream:stopped').length === 2, 'both stops')
  t.match(named(published, 'client:disconnected'), [{ message: { agentIds: ['a1', 'a2'], fleet: true } }])
  t.same(named(published, 'stream:stopped').map((event) => [event.message.agentId, event.message.reason]).sort(), [['a1', 'no-demand'], ['a2', 'no-demand']])
  t.equal(named(published, 'client:connected', 'client:disconnected').length, 2, 'one connection, however many agents')
})

t.test('why a stream stopped: cancelled, ended by the agent, an interval change, a failed stop, a server shutdown', async (t) => {
  const published = recordChannels(t)
  const { app, json, adapter } = await startServer(t, { stopDelayMs: 50 })
  const stopped = () => named(published, 'stream:stopped').map((event) => event.message)

  await json('/agents/cancel-me/metrics/streaming/start', 'POST', { interval_seconds: 3 })
  t.equal((await json('/tasks/task-1/cancel', 'POST')).statusCode, 200)
  t.same(stopped(), [{ agentId: 'cancel-me', taskId: 'task-1', reason: 'cancelled', endReason: null, error: null }])

  await json('/agents/goes-offline/metrics/streaming/start', 'POST', { interval_seconds: 3 })
  adapter.endTask('goes-offline', 'agent-offline')
  t.same(stopped()[1], { agentId: 'goes-offline', taskId: 'task-2', reason: 'ended-by-agent', endReason: 'agent-offline', error: null }, 'told at once: the plugin calls no stop')

  // No changeInterval: a smaller interval restarts the stream.
  await json('/agents/retuned/metrics/streaming/start', 'POST', { interval_seconds: 10 })
  await json('/agents/retuned/metrics/streaming/start', 'POST', { interval_seconds: 2 })
  await waitFor(() => named(published, 'stream:started').filter((event) => event.message.agentId === 'retuned').length === 2, 'the restart')
  const retuned = published.filter((event) => event.message.agentId === 'retuned' && event.name.startsWith('stream:'))
  t.same(retuned.map((event) => [event.name, event.message.reason ?? event.message.intervalSeconds]), [
    ['stream:started', 10], ['stream:stopped', 'interval-change'], ['stream:started', 2]
  ], 'the old task is over before the new one starts')

  adapter.stopMetricsStreaming = async () => { throw new Error('agent unreachable') }
  await json('/agents/retuned/metrics/streaming/stop', 'POST')
  await waitFor(() => stopped().length === 4, 'the failed stop')
  t.match(stopped()[3], { agentId: 'retuned', taskId: 'task-4', reason: 'no-demand', endReason: null, error: { code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', message: /agent unreachable/ } })

  adapter.stopMetricsStreaming = TestAdapter.prototype.stopMetricsStreaming
  await json('/agents/at-shutdown/metrics/streaming/start', 'POST', { interval_seconds: 3 })
  await app.close()
  t.match(stopped()[4], { agentId: 'at-shutdown', reason: 'server-shutdown', error: null })
  t.equal(named(published, 'stream:started').length, named(published, 'stream:stopped').length, 'every started task is stopped once')
})

t.test('failures: a start that fails is one failed message; a live stream whose transport fails is failed, then stopped', async (t) => {
  const published = recordChannels(t)
  const adapter = new TestAdapter({ autoAnswer: false })
  const { sse } = await startServer(t, { adapter, stopDelayMs: 50 })
  const refused = await sse('/agents/broken/metrics/stream?interval_seconds=5')
  await waitFor(() => adapter.startCalls.length === 1, 'the start call')
  adapter.startCalls[0]!.answer.reject(new Error('no route to agent'))
  await waitFor(() => named(published, 'stream:failed').length === 1, 'the failure')
  t.match(named(published, 'stream:failed')[0]!.message, {
    agentId: 'broken', phase: 'start', taskId: null, error: { code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', message: /no route to agent/ }
  })
  t.same(named(published, 'stream:started', 'stream:stopped'), [], 'no task, so nothing started or stopped')
  refused.close()

  adapter.autoAnswer = true
  const client = await sse('/agents/flaky/metrics/stream?interval_seconds=5')
  await waitFor(() => named(published, 'stream:started').length === 1, 'the start')
  adapter.sinkOf('flaky').error(new Error('socket reset'))
  await waitFor(() => named(published, 'stream:stopped').length === 1, 'the stop after the failure')
  const flaky = published.filter((event) => event.message.agentId === 'flaky')
  t.same(flaky.map((event) => event.name), ['stream:started', 'stream:failed', 'stream:stopped'])
  t.match(flaky[1]!.message, { phase: 'stream', taskId: 'task-2', error: { code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', message: /socket reset/ } })
  t.match(flaky[2]!.message, { taskId: 'task-2', reason: 'stream-failed', error: null })
  client.close()
})

/** A raw HTTP client that never reads: the server's queue for it fills up. */
async function stalledClient (t: Test, baseUrl: string, path: string): Promise<Socket> {
  const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.pause()
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
  return socket
}

t.test('a client that stops reading: every frame it will never get is a conflated message naming the agent; then it is stalled and disconnected', async (t) => {
  const published = recordChannels(t)
  const { app, baseUrl, adapter } = await startServer(t, { maxBufferedBytes: 2048, stallTimeoutMs: 3000, heartbeatIntervalMs: 0, flushIntervalMs: 0 })
  await stalledClient(t, baseUrl, '/agents/agent1/metrics/stream?interval_seconds=5')
  await stalledClient(t, baseUrl, '/metrics/stream?agents=agent1&interval_seconds=5')
  await waitFor(() => app.sseConnections().length === 2 && adapter.liveTasks.size === 1, 'both clients and the stream')
  const connected = named(published, 'client:connected').map((event) => event.message)
  const single = connected.find((message) => message.fleet === false)!.clientId
  const fleet = connected.find((message) => message.fleet === true)!.clientId

  const padding = 'z'.repeat(4000)
  let pushed = 0
  while (!app.sseConnections().every((connection) => connection.blocked) && pushed < 20_000) {
    adapter.push('agent1', { i: ++pushed, padding })
    await nextTick()
  }
  t.ok(app.sseConnections().every((connection) => connection.blocked), `both blocked after ${pushed} samples`)
  const before = named(published, 'client:conflated').length
  // Synchronous: no sweep can drop them in between. The first offer of a blocked client may only fill its slot.
  for (let i = 0; i < 20; i++) adapter.push('agent1', { i: ++pushed, padding })
  const conflated = named(published, 'client:conflated').slice(before).map((event) => event.message)
  for (const clientId of [single, fleet]) {
    const mine = conflated.filter((message) => message.clientId === clientId)
    t.ok(mine.length >= 19, `${clientId === fleet ? 'fleet' : 'single-agent'} client: ${mine.length} conflated frames for 20 samples`)
    t.ok(mine.every((message) => message.agentId === 'agent1' && message.frame === 'metrics' && (message.bufferedBytes as number) >= 2048), 'each names the agent and the queue')
  }

  await waitFor(() => named(published, 'client:disconnected').length === 2, 'both stalled clients to be dropped', 20_000)
  for (const clientId of [single, fleet]) {
    const theirs = published.filter((event) => event.message.clientId === clientId && event.name !== 'client:conflated')
    t.same(theirs.map((event) => event.name), ['client:connected', 'client:stalled', 'client:disconnected'])
    t.match(theirs[1]!.message, { agentIds: ['agent1'], stalledForMs: Number, bufferedBytes: Number })
    t.ok((theirs[1]!.message.stalledForMs as number) >= 3000, 'dropped after stallTimeoutMs')
  }
})

/**
 * Every event of the adapter TracingChannel, with a copy of its context as it was then; the
 * routes' `agentExists` checks (traced as well) are kept apart, in `existsChecks`.
 */
function recordTraces (t: Test) {
  const traces: Array<{ event: string, context: AdapterCallContext, same: AdapterCallContext }> = []
  const existsChecks: string[] = []
  const channel = tracingChannel<unknown, AdapterCallContext>(diagnosticsChannels.adapterCall)
  const on = (event: string) => (context: AdapterCallContext) => {
    if (context.operation === 'agentExists') existsChecks.push(`${event} ${context.agentId}`)
    else traces.push({ event, context: { ...context }, same: context })
  }
  const handlers = { start: on('start'), end: on('end'), asyncStart: on('asyncStart'), asyncEnd: on('asyncEnd'), error: on('error') }
  channel.subscribe(handlers)
  t.teardown(() => { channel.unsubscribe(handlers) })
  return { traces, existsChecks, channel }
}

t.test('adapter calls are traced: start and end around the call, asyncStart and asyncEnd when it settles, in the caller\'s store', async (t) => {
  const { traces, existsChecks, channel } = recordTraces(t)
  const store = new AsyncLocalStorage<AdapterCallContext>()
  channel.start.bindStore(store, (context) => context)
  t.teardown(() => { channel.start.unbindStore(store) })
  const adapter = new TestAdapter()
  const seenByAdapter: Array<AdapterCallContext | undefined> = []
  const start = adapter.startMetricsStreaming.bind(adapter)
  adapter.startMetricsStreaming = (...args) => {
    seenByAdapter.push(store.getStore())
    return start(...args)
  }
  const changes = adapter.enableChangeInterval()
  const { sse } = await startServer(t, { adapter, stopDelayMs: 50 })

  const slow = await sse('/agents/agent1/metrics/stream?interval_seconds=10')
  await waitFor(() => traces.length === 4, 'the traced start')
  t.same(traces.map(({ event }) => event), ['start', 'end', 'asyncStart', 'asyncEnd'])
  t.ok(traces.every(({ same }) => same === traces[0]!.same), 'one context object per call')
  t.same(traces[0]!.context, { operation: 'startMetricsStreaming', agentId: 'agent1' })
  t.same(traces[2]!.context, { operation: 'startMetricsStreaming', agentId: 'agent1', result: 'task-1' }, 'the result is the task id')
  t.equal(seenByAdapter[0], traces[0]!.same, 'the adapter runs with the store bound to the start channel (an APM\'s active span)')
  t.same(existsChecks.slice(0, 4), ['start agent1', 'end agent1', 'asyncStart agent1', 'asyncEnd agent1'], 'the route\'s agentExists check is traced too')

  const fast = await sse('/agents/agent1/metrics/stream?interval_seconds=2')
  await waitFor(() => changes.length === 1 && traces.length === 8, 'the traced re-tune')
  t.same(traces.slice(4).map(({ event, context }) => [event, context.operation, context.agentId]), [
    ['start', 'changeInterval', 'agent1'], ['end', 'changeInterval', 'agent1'], ['asyncStart', 'changeInterval', 'agent1'], ['asyncEnd', 'changeInterval', 'agent1']
  ])
  slow.close()
  fast.close()
  // The clients may leave in either order: the faster one first re-tunes the stream back to 10 s.
  const stops = () => traces.filter(({ context }) => context.operation === 'stopMetricsStreaming')
  await waitFor(() => stops().length === 4, 'the traced stop')
  t.same(stops().map(({ event, context }) => [event, context.operation, context.agentId]), [
    ['start', 'stopMetricsStreaming', 'agent1'], ['end', 'stopMetricsStreaming', 'agent1'], ['asyncStart', 'stopMetricsStreaming', 'agent1'], ['asyncEnd', 'stopMetricsStreaming', 'agent1']
  ])
  t.notOk(traces.some(({ event }) => event === 'error'))
})

t.test('a failing or hanging adapter call is traced with error (502 or 504) before asyncStart and asyncEnd', async (t) => {
  const { traces } = recordTraces(t)
  const adapter = new TestAdapter({ autoAnswer: false })
  const { sse } = await startServer(t, { adapter, stopDelayMs: 50, adapterTimeoutMs: 300 })

  const first = await sse('/agents/failing/metrics/stream?interval_seconds=5')
  await waitFor(() => adapter.startCalls.length === 1, 'the start call')
  adapter.startCalls[0]!.answer.reject(new Error('agent refused'))
  await waitFor(() => traces.length === 5, 'the failed call traced')
  t.same(traces.map(({ event }) => event), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  t.match(traces[2]!.context, { operation: 'startMetricsStreaming', agentId: 'failing', error: { code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', statusCode: 502, cause: { message: 'agent refused' } } })
  first.close()

  const second = await sse('/agents/hanging/metrics/stream?interval_seconds=5')
  await waitFor(() => traces.length === 10, 'the timed-out call traced', 10_000)
  t.same(traces.slice(5).map(({ event }) => event), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  t.match(traces[7]!.context, { operation: 'startMetricsStreaming', agentId: 'hanging', error: { code: 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT', statusCode: 504 } })
  second.close()
})
