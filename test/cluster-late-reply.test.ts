// An instance reckons Redis's clock from the replies of its scripts, and drops a demand change stamped more than a
// second ahead of it (a forged one far in the future would hide every later read). Before 2026-11-30 it kept the last
// reply's reading: one reply handled late (by its way back and a busy event loop; `npm run bench:cluster` at
// 16 x 1,000 dropped 64 real changes so) set its clock back, and it dropped every real change until its next renewal.
// Here a TCP proxy holds the owner's replies 1.5 s while it writes one demand change.
import t from 'tap'
import { startClusterApp } from './helpers/cluster-app.js'
import { startDelayProxy } from './helpers/delay-proxy.js'
import { redisSkip, startRedis } from './helpers/redis-server.js'
import { waitFor } from './helpers/server.js'

const replyHeldMs = 1500
// Renewals (which read the clock again, and the demand) 20 s apart: only the demand change can tell the owner.
const leaseMs = 60_000

t.test('a reply handled late does not make the owner drop the next demand change as one from the future', { skip: redisSkip() }, async (t) => {
  const redis = await startRedis(t)
  let holdReplies = false
  let heldUntil = 0
  // Only replies to commands: what the subscriber connection hears (`message`) passes at once.
  const proxy = await startDelayProxy(t, redis.port, (chunk, toServer) => {
    if (toServer || !holdReplies || chunk.includes('message')) return 0
    heldUntil = Date.now() + replyHeldMs
    return replyHeldMs
  })
  const a = await startClusterApp(t, { redisUrl: proxy.url, instanceId: 'a', keyPrefix: 'late:', leaseMs })
  const b = await startClusterApp(t, { redisUrl: redis.url, instanceId: 'b', keyPrefix: 'late:', leaseMs })
  const clients = [await a.sse('/agents/c/metrics/stream')]
  await waitFor(async () => (await a.status('c')).state === 'active', 'a streams c', 10_000)

  holdReplies = true
  clients.push(await a.sse('/agents/c/metrics/stream'))
  await waitFor(() => heldUntil !== 0, 'the reply to a\'s demand change to be held', 10_000)
  await waitFor(() => Date.now() > heldUntil + 300, 'the held reply to reach a')
  holdReplies = false

  clients.push(await b.sse('/agents/c/metrics/stream'))
  await waitFor(async () => (await a.status('c')).sse_clients === 3, 'the owner to count b\'s client from its demand change', 5_000)
  t.same(a.logs.filter((record) => /from the future/.test(String(record.msg))).map((record) => record.msg), [], 'no demand change dropped')
  for (const client of clients) client.close()
  await waitFor(() => a.adapter.liveTasks.size === 0, 'the stream to stop once every client left', 10_000)
})
