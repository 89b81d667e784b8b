import { Redis } from 'ioredis'
import t from 'tap'
import { CLUSTER_TEST_LEASE_MS, liveTasks, startClusterApp, starts, stops } from './helpers/cluster-app.js'
import { startRecorder } from './helpers/recorder.js'
import { redisSkip, startRedis } from './helpers/redis-server.js'
import { waitFor } from './helpers/server.js'

// The cluster tests' own harness: a throwaway Redis that can crash and come back on the
// same port, the recorder the instances report their adapter calls to, and the lease the
// cluster tests run with.

// About 10 s; the margin is for a machine at half this one's speed.
t.setTimeout(90_000)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('a throwaway Redis stops and starts again on the same port', { skip: redisSkip() }, async (t) => {
  const redis = await startRedis(t)
  t.equal(redis.url, `redis://127.0.0.1:${redis.port}`)
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
  client.on('error', () => {}) // the outage below is deliberate
  t.teardown(() => client.disconnect())
  t.equal(await client.ping(), 'PONG')
  await client.set('key', 'value')

  await redis.stop()
  await t.rejects(client.ping(), 'commands fail while it is down')

  await redis.start()
  // The same client reconnects by itself, so the port really is the same.
  await waitFor(() => client.status === 'ready', 'the client to reconnect', 10_000)
  t.equal(await client.ping(), 'PONG')
  t.equal(await client.get('key'), null, 'nothing survives a crash (no persistence)')

  await redis.restart()
  await waitFor(() => client.status === 'ready', 'the client to reconnect after restart', 10_000)
  t.equal(await client.ping(), 'PONG')
})

t.test('the recorder collects the instances\' adapter calls', async (t) => {
  const recorder = await startRecorder(t)
  const post = async (event: object) => (await fetch(recorder.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event) })).status
  t.equal(await post({ type: 'start', instance: 'a', agentId: 'x', taskId: 'a:x:1', at: 1 }), 204)
  t.equal(await post({ type: 'start', instance: 'b', agentId: 'y', taskId: 'b:y:1', at: 2 }), 204)
  t.same(recorder.liveTasks(), ['a:x:1', 'b:y:1'])
  t.equal(await post({ type: 'stop', instance: 'b', agentId: 'x', taskId: 'a:x:1', at: 3, foreign: true }), 204)
  t.equal(await post({ type: 'stop-failed', instance: 'b', agentId: 'y', taskId: 'b:y:1', at: 4 }), 204)
  await recorder.waitFor((events) => events.length === 4, 'four events')
  t.same(recorder.starts('x').map((event) => event.taskId), ['a:x:1'])
  t.match(recorder.stops(), [{ taskId: 'a:x:1', foreign: true }])
  t.same(recorder.liveTasks('x'), [])
  t.same(recorder.liveTasks(), ['b:y:1'], 'a failed stop leaves the task live')
  t.equal((await fetch(recorder.url, { method: 'POST', body: 'not json' })).status, 400)
  await t.rejects(recorder.waitFor(() => false, 'never', 50), /timed out waiting for never/)
})

t.test('with the cluster tests\' lease, a 1 s stall of this process hands no agent over', { skip: redisSkip() }, async (t) => {
  const renewMs = CLUSTER_TEST_LEASE_MS / 3
  const redis = await startRedis(t)
  const apps = await Promise.all(['a', 'b'].map((instanceId) => startClusterApp(t, { redisUrl: redis.url, instanceId, keyPrefix: 'stall:' })))
  const clients = await Promise.all(apps.map((app) => app.sse('/agents/x/metrics/stream')))
  t.teardown(() => { for (const client of clients) client.close() })
  await waitFor(() => liveTasks(apps).length === 1, 'the agent\'s task', 10_000)
  for (let stall = 0; stall < 2; stall++) {
    // Anywhere in the renewal period; every instance lives in this process, so all of them stall.
    await sleep(Math.random() * renewMs)
    const until = Date.now() + 1000
    while (Date.now() < until) { /* busy */ }
    await sleep(renewMs * 2)
  }
  t.equal(starts(apps, 'x'), 1, 'one start: the owner kept its lease')
  t.equal(stops(apps, 'x'), 0, 'and its task')
  const handovers = apps.flatMap((app) => app.logs.filter((line) => /lease|took over|unavailable/i.test(line.msg) && line.level >= 40).map((line) => `${app.id}: ${line.msg}`))
  t.same(handovers, [], 'no lease lost, nothing taken over')
})
