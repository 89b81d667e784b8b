// An instance writes demand changes a few dozen agents at a time (so that a burst cannot starve its renewal). Before
// 2026-11-30, closing in the middle of such a burst let the rest of it go on after `app.close()` resolved: on a
// connection the host then closes, every remaining agent logged "Could not write the demand … Connection is closed"
// (thousands of warnings at 8 x 1,000 agents in `npm run bench:cluster`), and a write still on its way could put a
// record back after the instance had taken itself out of the agent's demand.
import t from 'tap'
import { Redis } from 'ioredis'
import { startClusterApp } from './helpers/cluster-app.js'
import { redisSkip, startRedis } from './helpers/redis-server.js'
import { waitFor } from './helpers/server.js'

const agents = 400

t.test('closing during a burst of demand changes leaves every agent\'s demand, with no write after the close', { skip: redisSkip() }, async (t) => {
  const redis = await startRedis(t)
  const a = await startClusterApp(t, { redisUrl: redis.url, instanceId: 'a', keyPrefix: 'burst:', leaseMs: 60_000 })
  const inspector = new Redis(redis.url)
  t.teardown(() => inspector.disconnect())
  const records = async () => {
    const keys = await inspector.keys('burst:{*}:demand')
    const fields = await Promise.all(keys.map((key) => inspector.hkeys(key)))
    return fields.flat().filter((field) => field === 'i:a').length
  }
  const subscriptions = Array.from({ length: agents }, (_, index) =>
    a.app.streamLifecycle.subscribe(`burst-${index}`, { intervalSeconds: 1, onSample () {} }))
  await waitFor(async () => (await records()) === agents, `a's record in the demand of all ${agents} agents`, 20_000)

  // Every client leaves at once, and the instance closes while those changes are being written.
  for (const subscription of subscriptions) subscription.unsubscribe()
  await new Promise((resolve) => setImmediate(resolve))
  await a.app.close()
  const closedAt = a.logs.length
  // As the README asks: the plugin first, then the host's Redis client.
  await a.redis.quit()
  await new Promise((resolve) => setTimeout(resolve, 300))

  t.equal(await records(), 0, 'a is in no agent\'s demand')
  const afterClose = a.logs.slice(closedAt).filter((record) => record.level >= 40).map((record) => record.msg)
  t.same(afterClose, [], 'nothing went wrong after app.close() resolved')
  // Only the demand's own messages: stopping 400 tasks on a loaded machine may log that a stop's check took long.
  t.same(a.logs.filter((record) => /Could not (write the demand|leave the cluster)/.test(String(record.msg))).map((record) => record.msg), [], 'no write failed')
})
