// The fleet route: many agents on one SSE connection (GET /metrics/stream?agents=…).
import { EventSource } from 'eventsource'
import t from 'tap'
import { AgentStreamClient, type AgentStreamClientError } from '../lib/client/index.js'
import { liveTasks, startClusterApp } from './helpers/cluster-app.js'
import { redisSkip, startRedis } from './helpers/redis-server.js'
import { startServer, waitFor, type SseStream } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const metricsOf = (stream: SseStream) => stream.events.filter((event) => event.event === 'metrics').map((event) => ({ id: Number(event.id), ...JSON.parse(event.data) }))
const ofType = (stream: SseStream, type: string) => stream.events.filter((event) => event.event === type).map((event) => JSON.parse(event.data))

t.test('one fleet connection of 3 agents starts 3 streams; a second one sharing 2 and a single-agent client start nothing more; each agent stops after its own grace window', async (t) => {
  const { sse, adapter, status } = await startServer(t, { stopDelayMs: 300 })
  const first = await sse('/metrics/stream?agents=a1,a2,a3&interval_seconds=1')
  t.equal(first.statusCode, 200)
  t.match(first.headers['content-type'], /text\/event-stream/)
  await waitFor(() => adapter.liveTasks.size === 3, 'three streams')
  t.same(adapter.startCalls.map((call) => call.agentId).sort(), ['a1', 'a2', 'a3'])

  const second = await sse('/metrics/stream?agents=a2,a3,a2&interval_seconds=1')
  const single = await sse('/agents/a3/metrics/stream?interval_seconds=1')
  await waitFor(async () => (await status('a3')).sse_clients === 3, 'a3 counts both fleet connections and the single client')
  t.equal(adapter.startCalls.length, 3, 'no extra start')
  t.equal((await status('a2')).sse_clients, 2, 'a duplicate in the list counts once')
  t.equal((await status('a1')).sse_clients, 1)

  adapter.push('a1', { n: 1 })
  adapter.push('a3', { n: 2 })
  adapter.push('a2', { n: 3 })
  await waitFor(() => metricsOf(first).length === 3 && metricsOf(second).length === 2 && single.events.length === 1, 'the samples')
  t.same(metricsOf(first).map(({ agent_id: agentId, metrics }) => [agentId, metrics.n]), [['a1', 1], ['a3', 2], ['a2', 3]])
  t.same(metricsOf(second).map(({ agent_id: agentId }) => agentId), ['a3', 'a2'])
  const ids = metricsOf(first).map((sample) => sample.id)
  t.ok(ids.every((id, index) => index === 0 || id > ids[index - 1]!), `ids increase on the connection across agents: ${ids}`)
  t.equal(single.events[0]!.id, String(metricsOf(first)[1]!.id), 'the same sample has the same id on both routes')
  t.same(JSON.parse(single.events[0]!.data), { n: 2 }, 'the single-agent route is unchanged')

  first.close()
  await waitFor(() => adapter.stopsFor('a1') === 1, 'a1 stops: its last subscriber left', 5000)
  t.equal(adapter.stopCalls.length, 1, 'a2 and a3 still have subscribers')
  second.close()
  await waitFor(() => adapter.stopsFor('a2') === 1, 'a2 stops')
  await sleep(400)
  t.equal(adapter.stopsFor('a3'), 0, 'a3 keeps its single-agent client')
  single.close()
  await waitFor(() => adapter.stopsFor('a3') === 1, 'a3 stops')
  t.equal(adapter.liveTasks.size, 0)
})

t.test('status events: one per agent on open, as GET /agents/:agentId/status answers it; changes coalesced to at most one per agent per second', async (t) => {
  const { sse, adapter, json } = await startServer(t, { stopDelayMs: 2000 })
  const fleet = await sse('/metrics/stream?agents=s1,s2')
  await waitFor(() => ofType(fleet, 'status').length === 2, 'two statuses')
  const initial = ofType(fleet, 'status')
  t.same(initial.map((status) => status.agent_id).sort(), ['s1', 's2'])
  t.notOk(fleet.events.filter((event) => event.event === 'status').some((event) => event.id !== undefined), 'status events carry no id')
  await waitFor(() => adapter.liveTasks.size === 2, 'the streams')

  // A connect storm on s1: 20 clients join at once.
  const storm = await Promise.all(Array.from({ length: 20 }, () => sse('/agents/s1/metrics/stream')))
  await sleep(2500)
  const s1 = ofType(fleet, 'status').filter((status) => status.agent_id === 's1')
  t.ok(s1.length <= 4, `at most one status per second for s1 (${s1.length} in ~2.5 s, 20 joins)`)
  t.same(s1.at(-1), (await json('/agents/s1/status')).body, 'the last status sent is the settled one, exactly as the status route answers')
  for (const client of storm) client.close()
  fleet.close()
})

t.test('an agent that ends or fails is over on the connection; the others go on; the response ends with the last one', async (t) => {
  const adapter = new TestAdapter()
  const start = adapter.startMetricsStreaming.bind(adapter)
  adapter.startMetricsStreaming = async (agentId, options, sink) => {
    if (agentId === 'broken') throw new Error('agent unreachable')
    return start(agentId, options, sink)
  }
  const { sse, status } = await startServer(t, { adapter })
  const fleet = await sse('/metrics/stream?agents=ok1,ok2,broken&interval_seconds=1')
  const failure = await fleet.next((event) => event.event === 'error', 'the failed agent')
  t.match(JSON.parse(failure.data), { agent_id: 'broken', statusCode: 502, code: 'FST_ERR_AGENT_SSE_ADAPTER_FAILED', error: 'Bad Gateway', message: /agent unreachable/ })
  await waitFor(() => adapter.liveTasks.size === 2, 'the two others stream')
  adapter.endTask('ok1', 'agent-offline')
  const ended = await fleet.next((event) => event.event === 'end', 'ok1 ends')
  t.same(JSON.parse(ended.data), { agent_id: 'ok1', reason: 'agent-offline' })
  adapter.push('ok2', { still: true })
  await waitFor(() => metricsOf(fleet).length === 1, 'ok2 goes on')
  t.notOk(fleet.ended, 'the response is still open')
  t.equal((await status('ok2')).sse_clients, 1)
  adapter.endTask('ok2', 'done')
  await waitFor(() => fleet.ended, 'the response ends with the last agent')
})

t.test('resume: one Last-Event-ID replays every agent\'s missed samples in id order, or its gap and newest', async (t) => {
  const { sse, adapter } = await startServer(t, { replayBufferSize: 4, stopDelayMs: 5000 })
  const fleet = await sse('/metrics/stream?agents=r1,r2,r3&interval_seconds=1')
  await waitFor(() => adapter.liveTasks.size === 3, 'the streams')
  adapter.push('r1', { n: 1 })
  adapter.push('r2', { n: 1 })
  await waitFor(() => metricsOf(fleet).length === 2, 'two samples')
  const lastSeen = metricsOf(fleet)[1]!.id
  fleet.close()
  // While the client is away: r1 and r2 get two each, r3 gets ten (more than its buffer holds).
  adapter.push('r1', { n: 2 })
  adapter.push('r3', { n: 1 })
  adapter.push('r2', { n: 2 })
  for (let n = 2; n <= 10; n++) adapter.push('r3', { n })
  adapter.push('r1', { n: 3 })

  const back = await sse('/metrics/stream?agents=r1,r2,r3&interval_seconds=1', { 'last-event-id': String(lastSeen) })
  await waitFor(() => metricsOf(back).length === 4, 'the replay')
  await sleep(100)
  const replay = metricsOf(back)
  t.same(replay.map(({ agent_id: agentId, metrics }) => `${agentId}:${metrics.n}`), ['r1:2', 'r2:2', 'r3:10', 'r1:3'], 'r1 and r2 replayed, r3 newest only, in id order')
  t.ok(replay.every((sample, index) => index === 0 || sample.id > replay[index - 1]!.id), 'ids increase')
  t.same(ofType(back, 'gap'), [{ agent_id: 'r3', missed: 9, last_event_id: lastSeen }], 'r3 missed 9 samples no longer held')
  const gapIndex = back.events.findIndex((event) => event.event === 'gap')
  t.equal(JSON.parse(back.events[gapIndex + 1]!.data).agent_id, 'r3', 'the gap comes right before r3\'s newest')
  t.equal(adapter.startCalls.length, 3, 'resumed within the grace window: no restart')
  back.close()
})

t.test('refused requests answer 4xx/503 JSON errors and start nothing', async (t) => {
  const adapter = new TestAdapter({ knownAgents: ['k1', 'k2', 'k3', 'busy'] })
  const { json, sse } = await startServer(t, {
    adapter,
    maxAgentsPerStream: 3,
    maxClientsPerAgent: 1,
    authorizeAgent: (_request, agentId) => !agentId.startsWith('secret')
  })
  const cases: Array<[string, number, RegExp]> = [
    ['/metrics/stream', 400, /agents/],
    ['/metrics/stream?agents=', 400, /agents/],
    ['/metrics/stream?agents=k1,,k2', 400, /empty agent id/],
    ['/metrics/stream?agents=k1,..', 400, /invalid agent id "\.\."/],
    ['/metrics/stream?agents=k1,bad%20id', 400, /invalid agent id/],
    ['/metrics/stream?agents=k1,k2,k3,k4', 400, /at most 3/],
    ['/metrics/stream?agents=k1,secret-1,secret-2', 403, /"secret-1"/],
    ['/metrics/stream?agents=k1,ghost,ghost2', 404, /"ghost"/],
    ['/metrics/stream?agents=k1&interval_seconds=Infinity', 400, /interval_seconds/]
  ]
  for (const [path, statusCode, message] of cases) {
    const answer = await json(path)
    t.equal(answer.statusCode, statusCode, path)
    t.match(answer.body, { statusCode, message }, path)
    t.type(answer.body.code, 'string')
  }
  const deduplicated = await sse('/metrics/stream?agents=k1,k2,k1,k2,k1,k3')
  t.equal(deduplicated.statusCode, 200, 'duplicates are ignored before the count')
  deduplicated.close()
  await waitFor(() => adapter.liveTasks.size === 0, 'k1..k3 stopped after their grace window', 5000)
  const holder = await sse('/agents/busy/metrics/stream')
  await waitFor(() => adapter.liveTasks.size >= 1, 'busy streams')
  const startsBefore = adapter.startCalls.length
  const refused = await json('/metrics/stream?agents=k3,busy')
  t.equal(refused.statusCode, 503)
  t.equal(refused.body.code, 'FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS')
  t.ok(refused.headers['retry-after'])
  t.equal(adapter.startCalls.length, startsBefore, 'all or nothing: k3 was not started either')
  holder.close()
})

t.test('maxClients counts a fleet connection once', async (t) => {
  const { sse, json } = await startServer(t, { maxClients: 2 })
  const fleet = await sse('/metrics/stream?agents=m1,m2,m3')
  const single = await sse('/agents/m1/metrics/stream')
  t.equal(single.statusCode, 200, 'the fleet connection took one slot of two')
  const third = await json('/metrics/stream?agents=m4')
  t.equal(third.statusCode, 503)
  fleet.close()
  single.close()
})

t.test('the typed client: streamFleet delivers per agent, changes its set of agents without a restart, and sends its headers', async (t) => {
  const { baseUrl, adapter } = await startServer(t, { prefix: '/api', stopDelayMs: 2000 }, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer t0ken') {
        reply.code(401)
        throw new Error('no token')
      }
    })
  })
  const client = new AgentStreamClient({ baseUrl: `${baseUrl}/api`, EventSource, headers: { authorization: 'Bearer t0ken' } })
  const received: string[] = []
  const statuses: string[] = []
  const fleet = client.streamFleet(['c1', 'c2'], 1, {
    onMetrics: (agentId, sample, eventId) => received.push(`${agentId}:${sample.n}:${eventId > 0}`),
    onStatus: (status) => statuses.push(`${status.agent_id}:${status.state}`)
  })
  t.teardown(() => fleet.close())
  await waitFor(() => adapter.liveTasks.size === 2, 'both agents stream behind the bearer token')
  adapter.push('c1', { n: 1 })
  adapter.push('c2', { n: 2 })
  await waitFor(() => received.length === 2, 'two samples')
  t.same(received, ['c1:1:true', 'c2:2:true'])
  t.ok(statuses.some((line) => line.startsWith('c1:')), 'statuses arrive')

  fleet.setAgents(['c2', 'c3'])
  await waitFor(() => adapter.liveTasks.size === 3 || adapter.startsFor('c3') === 1, 'c3 starts')
  adapter.push('c2', { n: 3 })
  await waitFor(() => received.includes('c2:3:true'), 'c2 goes on')
  t.equal(adapter.startsFor('c2'), 1, 'c2 kept: no stop and start within the grace window')
  t.same(fleet.agentIds, ['c2', 'c3'])

  const refusals: AgentStreamClientError[] = []
  const anonymous = new AgentStreamClient({ baseUrl: `${baseUrl}/api`, EventSource })
  anonymous.streamMetrics('c1', 1, { onRefused: (err) => refusals.push(err) })
  anonymous.streamFleet(['c1'], 1, { onRefused: (err) => refusals.push(err) })
  await waitFor(() => refusals.length === 2, 'both refusals reported')
  t.same(refusals.map((err) => err.statusCode), [401, 401])
})

t.test('cluster mode: a fleet client on instance B of agents owned by A', { skip: redisSkip() }, async (t) => {
  const redis = await startRedis(t)
  const keyPrefix = `fleet-${Date.now()}:`
  const a = await startClusterApp(t, { redisUrl: redis.url, instanceId: 'a', keyPrefix })
  const b = await startClusterApp(t, { redisUrl: redis.url, instanceId: 'b', keyPrefix })
  const owned = await a.sse('/agents/x1/metrics/stream')
  const owned2 = await a.sse('/agents/x2/metrics/stream')
  await waitFor(() => a.adapter.liveTasks.size === 2, 'a owns x1 and x2', 10_000)
  const fleet = await b.sse('/metrics/stream?agents=x1,x2')
  await waitFor(async () => (await b.status('x1')).sse_clients === 2 && (await b.status('x2')).sse_clients === 2, 'the fleet client counts cluster-wide', 10_000)
  a.adapter.push('x1', { n: 1 })
  a.adapter.push('x2', { n: 2 })
  a.adapter.push('x1', { n: 3 })
  await waitFor(() => metricsOf(fleet).length === 3, 'samples reach B\'s fleet client', 10_000)
  const samples = metricsOf(fleet)
  t.same(samples.map(({ agent_id: agentId, metrics }) => `${agentId}:${metrics.n}`), ['x1:1', 'x2:2', 'x1:3'])
  t.ok(samples[0]!.id < samples[1]!.id && samples[1]!.id < samples[2]!.id, 'one id sequence for every agent of the cluster')
  t.same(liveTasks([a, b]).length, 2, 'one stream per agent in the cluster')
  for (const client of [owned, owned2, fleet]) client.close()
})

t.test('flushIntervalMs: samples arriving one per macrotask leave a connection as a few writes, in order', async (t) => {
  const { baseUrl, adapter, app } = await startServer(t, { flushIntervalMs: 200, heartbeatIntervalMs: 0 })
  const { connect } = await import('node:net')
  const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  const chunks: string[] = []
  socket.on('data', (chunk) => chunks.push(String(chunk)))
  socket.write('GET /metrics/stream?agents=w1,w2,w3,w4,w5&interval_seconds=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await waitFor(() => adapter.liveTasks.size === 5 && chunks.join('').includes('event: status'), 'the five streams')
  await sleep(300)
  const before = chunks.length
  for (let i = 0; i < 20; i++) {
    adapter.push(`w${(i % 5) + 1}`, { i })
    await new Promise((resolve) => setImmediate(resolve))
  }
  await waitFor(() => (chunks.join('').match(/event: metrics/g) ?? []).length === 20, 'the twenty samples')
  const writes = chunks.length - before
  t.ok(writes <= 4, `20 samples in ${writes} reads (one write per 200 ms window)`)
  const ids = [...chunks.join('').matchAll(/id: (\d+)\nevent: metrics/g)].map((match) => Number(match[1]))
  t.ok(ids.every((id, index) => index === 0 || id > ids[index - 1]!), 'in id order')
  t.equal(app.sseConnections().length, 1)
})
