// Regressions from the adversarial review ("Hardening" issue): every input from an adapter or a
// client is untrusted. Each test here failed before its fix.
import { connect, type Socket } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import type { MetricsSink, StartStreamingOptions } from '../lib/index.js'
import { IDLE_HISTORY_TTL_MS, MAX_IDLE_HISTORIES } from '../lib/lifecycle/history-store.js'
import { lifecycleFixture, recorder } from './helpers/lifecycle-fixture.js'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Task ids unique per agent only ("task-1" for every agent's first task), as the contract allows. */
class PerAgentTaskIds extends TestAdapter {
  private readonly counts = new Map<string, number>()
  override startMetricsStreaming (agentId: string, options: StartStreamingOptions, sink: MetricsSink): Promise<{ taskId: string }> {
    const count = (this.counts.get(agentId) ?? 0) + 1
    this.counts.set(agentId, count)
    return super.startMetricsStreaming(agentId, options, sink).then(() => ({ taskId: `task-${count}` }))
  }
}

t.test('one mutable sample object pushed for two agents: each client only ever receives its own agent\'s data', async (t) => {
  const { sse, adapter } = await startServer(t, { replayBufferSize: 8 })
  const alice = await sse('/agents/alice/metrics/stream?interval_seconds=1')
  const bob = await sse('/agents/bob/metrics/stream?interval_seconds=1')
  await waitFor(() => adapter.liveTasks.size === 2, 'both streams')
  const shared: Record<string, unknown> = {}
  for (let i = 1; i <= 3; i++) {
    shared.owner = 'alice'
    shared.i = i
    adapter.push('alice', shared)
    shared.owner = 'bob'
    adapter.push('bob', shared)
  }
  await waitFor(() => alice.events.length === 3 && bob.events.length === 3, 'three samples each')
  t.same(alice.events.map((event) => JSON.parse(event.data).owner), ['alice', 'alice', 'alice'])
  t.same(bob.events.map((event) => JSON.parse(event.data).owner), ['bob', 'bob', 'bob'])

  // The adapter mutates the object again: a replay sends what was accepted, not what the object holds now.
  shared.owner = 'mallory'
  const replay = await sse('/agents/alice/metrics/stream?interval_seconds=1', { 'last-event-id': '0' })
  await waitFor(() => replay.events.length === 3, 'alice\'s replay')
  t.same(replay.events.map((event) => JSON.parse(event.data)), [1, 2, 3].map((i) => ({ owner: 'alice', i })))
  for (const client of [alice, bob, replay]) client.close()
})

t.test('cancel: one authorised lookup; concurrent cancels of a task id two agents share never stop the other agent\'s task', async (t) => {
  const adapter = new PerAgentTaskIds()
  const { json } = await startServer(t, {
    adapter,
    authorizeAgent: async (request, agentId) => {
      await sleep(30) // room for the race the review used
      return agentId === 'mine' || request.headers['x-role'] === 'admin'
    }
  })
  const admin = { 'x-role': 'admin' }
  const status = async (agentId: string) => (await json(`/agents/${agentId}/status`, 'GET', undefined, admin)).body
  t.equal((await json('/agents/mine/metrics/streaming/start', 'POST', undefined, admin)).statusCode, 200)
  t.equal((await json('/agents/victim/metrics/streaming/start', 'POST', undefined, admin)).statusCode, 200)
  t.equal((await status('mine')).task_id, 'task-1')
  t.equal((await status('victim')).task_id, 'task-1')

  const answers = await Promise.all([json('/tasks/task-1/cancel', 'POST'), json('/tasks/task-1/cancel', 'POST')])
  t.same(answers.map((answer) => answer.statusCode).sort(), [200, 404], 'one cancel stops mine, the other finds nothing it may touch')
  t.equal((await status('victim')).state, 'active', 'victim still streams')
  t.same(adapter.stopCalls.map((call) => call.agentId), ['mine'], 'only mine was stopped')
})

t.test('host errors without a code keep their status on every plugin route', async (t) => {
  const { json, sse } = await startServer(t, {}, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer ok') {
        reply.code(401)
        throw new Error('missing bearer token')
      }
    })
  })
  for (const path of ['/agents/a1/status', '/streams', '/agents/a1/metrics/current']) {
    const answer = await json(path)
    t.equal(answer.statusCode, 401, `${path}: 401, not 500`)
    t.same(answer.body, { statusCode: 401, error: 'Unauthorized', message: 'missing bearer token' })
  }
  const stream = await sse('/agents/a1/metrics/stream')
  t.equal(stream.statusCode, 401, 'the stream route too')
  t.equal((await json('/agents/a1/status', 'GET', undefined, { authorization: 'Bearer ok' })).statusCode, 200)
})

t.test('a throwing authorizeAgent answers 503 without its message; a hanging one is bounded', async (t) => {
  const { json, logs, adapter } = await startServer(t, {
    adapterTimeoutMs: 300,
    authorizeAgent: async (_request, agentId) => {
      if (agentId === 'hang') return new Promise<boolean>(() => {})
      throw new Error('connect failed: db password=hunter2')
    }
  })
  const thrown = await json('/agents/a1/status')
  t.equal(thrown.statusCode, 503)
  t.equal(thrown.body.code, 'FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED')
  t.notMatch(JSON.stringify(thrown.body), /hunter2/, 'the thrown text is not sent')
  t.ok(logs.some((line) => line.level >= 50 && JSON.stringify(line).includes('hunter2')), 'it is logged')

  const started = Date.now()
  const hung = await json('/agents/hang/metrics/stream')
  t.equal(hung.statusCode, 503, 'a hang answers once adapterTimeoutMs passed')
  t.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`)
  t.equal(adapter.startCalls.length, 0, 'nothing started')
})

/** One request with the path exactly as given (an HTTP client would resolve `..` and `%2e%2e` first). */
async function rawStatusLine (baseUrl: string, path: string): Promise<string> {
  const { port } = new URL(baseUrl)
  const socket = connect(Number(port), '127.0.0.1')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  let text = ''
  for await (const chunk of socket) text += String(chunk)
  return text.split('\r\n')[0]!
}

t.test('agent ids made only of dots are refused before the adapter sees them', async (t) => {
  const { baseUrl, adapter } = await startServer(t)
  for (const id of ['.', '..', '%2e%2e', '%2E.', '...']) {
    for (const path of [`/agents/${id}/status`, `/agents/${id}/metrics/stream`]) {
      t.equal(await rawStatusLine(baseUrl, path), 'HTTP/1.1 400 Bad Request', path)
    }
  }
  t.equal(adapter.startCalls.length, 0)
  const ok = await request(`${baseUrl}/agents/a.b/status`)
  await ok.body.text()
  t.equal(ok.statusCode, 200, 'dots inside an id are fine')
})

t.test('idle agents\' histories expire and are bounded in number; ids never go back for a forgotten agent', async (t) => {
  const { lifecycle, adapter, timers } = lifecycleFixture({ stopDelayMs: 10 })
  const visit = async (agentId: string) => {
    const subscription = lifecycle.subscribe(agentId, recorder(1).options)
    await timers.advance(0)
    adapter.push(agentId, { n: 1 })
    subscription.unsubscribe()
    await timers.advance(10)
  }
  await visit('first')
  const firstId = lifecycle.lastEventId('first')
  t.ok(firstId > 0)
  for (let i = 0; i < MAX_IDLE_HISTORIES + 50; i++) await visit(`agent-${i}`)
  t.equal(lifecycle.lastEventId('first'), 0, 'the longest idle history was dropped past the bound')
  t.ok(lifecycle.lastEventId(`agent-${MAX_IDLE_HISTORIES + 49}`) > 0, 'a recent one is kept')
  await timers.advance(IDLE_HISTORY_TTL_MS)
  t.equal(lifecycle.lastEventId(`agent-${MAX_IDLE_HISTORIES + 49}`), 0, 'and it expires after IDLE_HISTORY_TTL_MS')

  const back = recorder(1)
  const subscription = lifecycle.subscribe('first', { ...back.options, lastEventId: firstId })
  await timers.advance(0)
  adapter.push('first', { n: 2 })
  t.ok(back.received.samples[0]!.eventId > firstId, 'a forgotten agent\'s next id is above its old ones')
  subscription.unsubscribe()
  await lifecycle.close()
})

t.test('maxHolds: one hold too many answers 503 with Retry-After and starts nothing; a held agent can be started again', async (t) => {
  const { json, adapter } = await startServer(t, { maxHolds: 2, retryMs: 2000 })
  t.equal((await json('/agents/h1/metrics/streaming/start', 'POST')).statusCode, 200)
  t.equal((await json('/agents/h2/metrics/streaming/start', 'POST')).statusCode, 200)
  const refused = await json('/agents/h3/metrics/streaming/start', 'POST')
  t.equal(refused.statusCode, 503)
  t.equal(refused.body.code, 'FST_ERR_AGENT_SSE_TOO_MANY_HOLDS')
  t.equal(refused.headers['retry-after'], '2')
  t.equal(adapter.startsFor('h3'), 0)
  t.equal((await json('/agents/h1/metrics/streaming/start', 'POST')).statusCode, 200, 'already held: not a new hold')
  t.equal((await json('/agents/h1/metrics/streaming/stop', 'POST')).statusCode, 200)
  t.equal((await json('/agents/h3/metrics/streaming/start', 'POST')).statusCode, 200, 'room again after a release')
})

t.test('GET /streams pages by agent id; authorizeAgent runs at most 8 at a time', async (t) => {
  let inFlight = 0
  let maxInFlight = 0
  const { app, json } = await startServer(t, {
    authorizeAgent: async (_request, agentId) => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      await sleep(1)
      inFlight--
      return !agentId.endsWith('7')
    }
  })
  const agents = Array.from({ length: 250 }, (_, i) => `agent-${String(i).padStart(3, '0')}`)
  await Promise.all(agents.map((agentId) => app.streamLifecycle.hold(agentId, { intervalSeconds: 5 })))
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page: { statusCode: number, body: { streams: Array<{ agent_id: string }>, next_cursor: string | null } } =
      await json(`/streams?limit=100${cursor === null ? '' : `&cursor=${cursor}`}`)
    t.equal(page.statusCode, 200)
    t.ok(page.body.streams.length <= 100)
    seen.push(...page.body.streams.map((status) => status.agent_id))
    cursor = page.body.next_cursor
    pages++
  } while (cursor !== null)
  t.equal(pages, 3)
  t.same(seen, agents.filter((agentId) => !agentId.endsWith('7')), 'every visible agent once, in order')
  t.ok(maxInFlight <= 8, `authorizeAgent calls in flight at most 8 (saw ${maxInFlight})`)
  t.equal((await json('/streams')).body.streams.length, 90, 'default page of 100, minus the refused')
  t.equal((await json('/streams?limit=0')).statusCode, 400)
  t.equal((await json('/streams?limit=1001')).statusCode, 400)
})

t.test('a client that only gets a replay and heartbeats, and never reads, is dropped after stallTimeoutMs', async (t) => {
  const { baseUrl, app, adapter } = await startServer(t, { maxBufferedBytes: 16 * 1024, stallTimeoutMs: 500, heartbeatIntervalMs: 100, replayBufferSize: 32 })
  // A manual hold keeps the agent streaming with no client: the only SSE connection is the one under test.
  await app.streamLifecycle.hold('big', { intervalSeconds: 1 })
  const padding = 'x'.repeat(512 * 1024)
  for (let i = 0; i < 32; i++) adapter.push('big', { i, padding })
  t.ok(app.streamLifecycle.lastEventId('big') >= 32, 'the history holds 16 MB of samples')

  const { port } = new URL(baseUrl)
  const stalled: Socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => stalled.destroy())
  await new Promise((resolve) => stalled.once('connect', resolve))
  stalled.pause()
  stalled.write('GET /agents/big/metrics/stream?interval_seconds=3600 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nLast-Event-ID: 0\r\n\r\n')
  await waitFor(() => app.sseConnections().length === 1, 'the replay-only client', 15_000)
  await waitFor(() => app.sseConnections().length === 0, 'the replay-only client to be dropped', 15_000)
})

t.test('sink.error with values that cannot be described: nothing throws back into the adapter, clients get a 502', async (t) => {
  const hostile = [
    Object.create(null),
    { toString () { throw new Error('toString exploded') } },
    Object.defineProperty(new Error('x'), 'message', { get () { throw new Error('message exploded') } })
  ]
  for (const value of hostile) {
    const { sse, adapter, status } = await startServer(t)
    const client = await sse('/agents/a1/metrics/stream')
    await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
    t.doesNotThrow(() => adapter.sinkOf('a1').error(value), 'sink.error does not throw')
    const event = await client.next((e) => e.event === 'error', 'an error event')
    t.match(JSON.parse(event.data), { statusCode: 502, code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED' })
    await waitFor(async () => (await status('a1')).state === 'idle', 'the task stopped')
    t.equal(adapter.stopsFor('a1'), 1)
  }
})

t.test('a start or a current read rejecting with an undescribable value answers 502, not 500', async (t) => {
  const adapter = new TestAdapter()
  adapter.startMetricsStreaming = async () => { throw Object.create(null) }
  adapter.getCurrentMetrics = async () => { throw { toString () { throw new Error('no') } } } // eslint-disable-line no-throw-literal
  const { json } = await startServer(t, { adapter })
  const start = await json('/agents/a1/metrics/streaming/start', 'POST')
  t.equal(start.statusCode, 502)
  t.equal(start.body.code, 'FST_ERR_AGENT_SSE_ADAPTER_FAILED')
  t.equal((await json('/agents/a1/metrics/current')).statusCode, 502)
})

t.test('samples that are not JSON objects are dropped once, before they take an event id', async (t) => {
  const { sse, adapter, logs } = await startServer(t)
  const client = await sse('/agents/a1/metrics/stream?interval_seconds=1')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  const circular: Record<string, unknown> = {}
  circular.self = circular
  const bad: unknown[] = [
    { toJSON: () => undefined },
    { toJSON: () => () => 1 },
    { toJSON: () => Symbol('s') },
    { toJSON: () => [1, 2] },
    { n: 1n },
    circular,
    null,
    42,
    'hello',
    [1, 2]
  ]
  adapter.push('a1', { good: 1 })
  for (const sample of bad) t.doesNotThrow(() => adapter.push('a1', sample as Record<string, unknown>))
  adapter.push('a1', { good: 2 })
  await waitFor(() => client.events.length === 2, 'the two good samples')
  await sleep(50)
  t.same(client.events.map((event) => JSON.parse(event.data)), [{ good: 1 }, { good: 2 }])
  t.equal(Number(client.events[1]!.id), Number(client.events[0]!.id) + 1, 'no id was used up by a dropped sample')
  t.notMatch(client.raw, /data: undefined/)
  t.equal(logs.filter((line) => /Dropped a sample of agent a1/.test(line.msg)).length, 1, 'logged once, not once per sample or subscriber')
  client.close()
})

t.test('getCurrentMetrics answering anything but a JSON object is a 502', async (t) => {
  for (const answer of [42, 'hello', undefined, [1, 2], null]) {
    const adapter = new TestAdapter()
    adapter.getCurrentMetrics = async () => answer as object
    const { json } = await startServer(t, { adapter })
    const response = await json('/agents/a1/metrics/current')
    t.equal(response.statusCode, 502, `${JSON.stringify(answer)} → 502`)
  }
})

t.test('intervals that are not finite integers are 400s and start nothing', async (t) => {
  const { json, adapter } = await startServer(t)
  for (const value of ['Infinity', '-Infinity', '1e400', '9'.repeat(400)]) {
    const stream = await json(`/agents/a1/metrics/stream?interval_seconds=${value}`)
    t.equal(stream.statusCode, 400, `stream ${value.slice(0, 12)} → 400`)
    const start = await json('/agents/a1/metrics/streaming/start', 'POST', { interval_seconds: value })
    t.equal(start.statusCode, 400, `start "${value.slice(0, 12)}" → 400`)
  }
  t.equal(adapter.startCalls.length, 0)
})
