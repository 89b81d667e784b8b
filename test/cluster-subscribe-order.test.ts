// An instance's clients count in the cluster only once Redis confirmed its subscription to the agent's channel, so
// that the owner's status never counts a client that would miss the next sample. Before 2026-11-30 the demand was
// written beside the SUBSCRIBE: the owner counted the new client, a sample published right then went to a channel
// the instance did not listen to yet, and only the latest sample came back through the catch-up read (found by
// "a graceful close of the owner hands the agent over" on a Redis Cluster, whose sharded SSUBSCRIBE takes up to
// tens of milliseconds; here a TCP proxy holds the instance's subscribe commands 300 ms, on one redis-server).
import t from 'tap'
import { startClusterApp } from './helpers/cluster-app.js'
import { startDelayProxy } from './helpers/delay-proxy.js'
import { redisSkip, startRedis } from './helpers/redis-server.js'
import { waitFor, type SseStream } from './helpers/server.js'

const subscribeHeldMs = 300
const metrics = (stream: SseStream) => stream.next((event) => event.event === 'metrics', `metrics on ${stream.url}`)

t.test('the owner counts a client of another instance only once that instance listens: two samples pushed right then both reach it', { skip: redisSkip() }, async (t) => {
  const redis = await startRedis(t)
  const proxy = await startDelayProxy(t, redis.port, (chunk, toServer) => toServer && /subscribe/i.test(chunk.toString('latin1')) ? subscribeHeldMs : 0)
  const a = await startClusterApp(t, { redisUrl: redis.url, instanceId: 'a', keyPrefix: 'listen:' })
  const b = await startClusterApp(t, { redisUrl: proxy.url, instanceId: 'b', keyPrefix: 'listen:' })
  const onA = await a.sse('/agents/f/metrics/stream')
  await waitFor(async () => (await a.status('f')).state === 'active', 'a streams f', 10_000)

  const onB = await b.sse('/agents/f/metrics/stream')
  const joinedAt = Date.now()
  await waitFor(async () => (await a.status('f')).sse_clients === 2, 'the owner to count b\'s client', 10_000)
  const countedAfterMs = Date.now() - joinedAt
  t.ok(countedAfterMs >= subscribeHeldMs - 50, `counted ${countedAfterMs} ms after the client joined b, once b's SUBSCRIBE (held ${subscribeHeldMs} ms) was confirmed`)
  a.adapter.push('f', { n: 1 })
  a.adapter.push('f', { n: 2 })
  t.same([JSON.parse((await metrics(onB)).data), JSON.parse((await metrics(onB)).data)], [{ n: 1 }, { n: 2 }], 'b\'s client got both samples, in order')
  t.same([JSON.parse((await metrics(onA)).data), JSON.parse((await metrics(onA)).data)], [{ n: 1 }, { n: 2 }], 'and so did a\'s')
  onA.close()
  onB.close()
  await waitFor(() => a.adapter.liveTasks.size === 0, 'the stream to stop once both clients left', 10_000)
})
