// What only a Redis Cluster has: agents whose keys and channels live on different masters, sharded
// pub/sub (an agent's samples go through the shard of its slot only), the renewal of agents spread over
// several nodes, and fleet connections over agents of several masters. A real 3-master cluster
// (test/helpers/redis-cluster.ts) and in-process instances; the scenarios that run on both kinds of
// Redis are cluster.test.ts's (cluster.redis-cluster.test.ts runs them against a cluster).
import calculateSlot from 'cluster-key-slot'
import t, { type Test } from 'tap'
import { CLUSTER_TEST_LEASE_MS, clusterTarget, liveTasks, startClusterApp, starts, stops, type ClusterApp, type RedisTarget } from './helpers/cluster-app.js'
import { redisClusterSkip, startRedisCluster, type ClusterNode, type RedisCluster } from './helpers/redis-cluster.js'
import { waitFor, type SseStream } from './helpers/server.js'

const skip = redisClusterSkip()
const leaseMs = CLUSTER_TEST_LEASE_MS
const renewMs = leaseMs / 3
/** For conditions that come within a renewal or two: polled, so the bound only catches what never comes. */
const waitMs = renewMs * 2 + 8000
// About 30 s alone; the margin is for a machine at half this one's speed.
t.setTimeout(180_000)

interface Agent { id: string, node: ClusterNode }

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const metricsOf = (stream: SseStream) => stream.events.filter((event) => event.event === 'metrics')
const label = (node: ClusterNode) => `${node.host}:${node.port}`

/** The first agent ids `edge-<n>` whose slot is on each master, in the masters' order. */
function agentPerMaster (cluster: RedisCluster): Agent[] {
  const agents: Agent[] = []
  for (let n = 1; agents.length < cluster.nodes.length; n++) {
    const id = `edge-${n}`
    const node = cluster.nodeOf(`{${id}}`)
    if (!agents.some((agent) => agent.node === node)) agents.push({ id, node })
  }
  return cluster.nodes.map((node) => agents.find((agent) => agent.node === node)!)
}

/** Per node, its INFO commandstats calls of `command` (e.g. spublish: also those made by scripts). */
async function callsPerNode (cluster: RedisCluster, command: string): Promise<number[]> {
  return Promise.all(cluster.nodes.map(async (node) => {
    const info = await cluster.node(node).info('commandstats')
    return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
  }))
}

/** Waits until every instance reports the agent active under one owner; returns that owner. */
async function ownerOf (apps: ClusterApp[], agentId: string): Promise<ClusterApp> {
  let owner: ClusterApp | undefined
  await waitFor(async () => {
    const statuses = await Promise.all(apps.map((app) => app.status(agentId)))
    owner = apps.find((app) => app.id === statuses[0].owner)
    return owner !== undefined && statuses.every((status) => status.state === 'active' && status.owner === owner!.id)
  }, `every instance to show an active owner of ${agentId}`, waitMs)
  return owner!
}

t.test('a Redis Cluster of three masters (in-process instances)', { skip }, async (t) => {
  const cluster = await startRedisCluster(t)
  const redis: RedisTarget = clusterTarget(cluster)
  const agents = agentPerMaster(cluster)
  const ids = agents.map((agent) => agent.id)
  let prefixes = 0

  async function instances (t: Test, n: number): Promise<{ apps: ClusterApp[], keyPrefix: string }> {
    const keyPrefix = `rc${++prefixes}:`
    const apps = await Promise.all(['a', 'b', 'c'].slice(0, n).map((instanceId) => startClusterApp(t, { redis, instanceId, keyPrefix })))
    return { apps, keyPrefix }
  }

  t.test('the agents span all three masters: each agent\'s keys live on the master of its slot, and each streams', async (t) => {
    t.equal(new Set(agents.map((agent) => agent.node)).size, 3, `one agent per master: ${agents.map((agent) => `${agent.id} on ${label(agent.node)}`).join(', ')}`)
    const { apps, keyPrefix } = await instances(t, 2)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    for (const agent of agents) {
      const key = `${keyPrefix}{${agent.id}}:owner`
      t.equal(await cluster.node(agent.node).cluster('KEYSLOT', key), calculateSlot(key), `CLUSTER KEYSLOT of ${key} on its node is cluster-key-slot's`)
    }
    const clients = await Promise.all(ids.map((id) => b.sse(`/agents/${id}/metrics/stream`)))
    const owners = await Promise.all(ids.map((id) => ownerOf(apps, id)))
    for (const [index, agent] of agents.entries()) {
      owners[index]!.adapter.push(agent.id, { agent: agent.id })
      const sample = await clients[index]!.next((event) => event.event === 'metrics', `a sample of ${agent.id}`)
      t.same(JSON.parse(sample.data), { agent: agent.id }, `${agent.id} (slot on ${label(agent.node)}) streams`)
    }
    t.equal(starts(apps, ids[0]!) + starts(apps, ids[1]!) + starts(apps, ids[2]!), 3, 'one start per agent')

    // Where the keys are: each agent's on its own master, none elsewhere.
    const keysOn = await Promise.all(cluster.nodes.map((node) => cluster.node(node).keys(`${keyPrefix}*`)))
    for (const agent of agents) {
      const where = cluster.nodes.filter((_node, index) => keysOn[index]!.some((key) => key.includes(`{${agent.id}}`)))
      t.same(where.map(label), [label(agent.node)], `${agent.id}'s keys are on ${label(agent.node)} only`)
      t.ok(keysOn[cluster.nodes.indexOf(agent.node)]!.includes(`${keyPrefix}{${agent.id}}:owner`), `${agent.id}'s lease is there`)
    }
    t.match(await a.status(ids[2]!), { state: 'active', sse_clients: 1 }, 'an instance without clients reads the agent from its master')
    for (const client of clients) client.close()
    await waitFor(() => liveTasks(apps).length === 0, 'every stream stopped', waitMs)
  })

  t.test('an agent\'s samples go out on a sharded channel of the master that owns its slot, and through no other node', async (t) => {
    const { apps, keyPrefix } = await instances(t, 2)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const agent = agents[1]!
    const channel = `${keyPrefix}{${agent.id}}:s`
    const onA = await a.sse(`/agents/${agent.id}/metrics/stream`)
    const onB = await b.sse(`/agents/${agent.id}/metrics/stream`)
    const owner = await ownerOf(apps, agent.id)
    await waitFor(async () => (await a.status(agent.id)).sse_clients === 2 && (await b.status(agent.id)).sse_clients === 2, 'both instances to count both clients', waitMs)

    // Both instances watch the agent: two sharded subscriptions, on the agent's master only; no classic one anywhere.
    const subscribers = async () => Promise.all(cluster.nodes.map(async (node) => {
      const [, sharded] = await cluster.node(node).pubsub('SHARDNUMSUB', channel) as [string, number]
      const [, classic] = await cluster.node(node).pubsub('NUMSUB', channel) as [string, number]
      return { node: label(node), sharded, classic }
    }))
    const expected = (count: number) => cluster.nodes.map((node) => ({ node: label(node), sharded: node === agent.node ? count : 0, classic: 0 }))
    let seen = await subscribers()
    await waitFor(async () => JSON.stringify(seen = await subscribers()) === JSON.stringify(expected(2)), 'two sharded subscribers on the agent\'s master', waitMs).catch(() => {})
    t.same(seen, expected(2), `PUBSUB SHARDNUMSUB ${channel}: 2 on ${label(agent.node)}, 0 elsewhere; PUBSUB NUMSUB 0 everywhere`)

    // Samples: SPUBLISH (from the owner's script) on the agent's master only.
    const before = await callsPerNode(cluster, 'spublish')
    const count = 5
    for (let n = 1; n <= count; n++) owner.adapter.push(agent.id, { n })
    for (const client of [onA, onB]) await waitFor(() => metricsOf(client).length >= count, `${count} samples on ${client.url}`, waitMs)
    const delta = (await callsPerNode(cluster, 'spublish')).map((calls, index) => calls - before[index]!)
    t.ok(delta[cluster.nodes.indexOf(agent.node)]! >= count, `at least ${count} SPUBLISH on ${label(agent.node)} (${delta.join(', ')} per node)`)
    t.same(delta.filter((_calls, index) => cluster.nodes[index] !== agent.node), [0, 0], 'no SPUBLISH on the other masters')
    for (const client of [onA, onB]) t.same(metricsOf(client).map((event) => JSON.parse(event.data).n), [1, 2, 3, 4, 5], `every sample, in order, on ${client.url}`)

    // Nobody watches any more: the subscriptions go.
    onA.close()
    onB.close()
    await waitFor(() => stops(apps, agent.id) === 1, 'the stream stops', waitMs)
    await waitFor(async () => JSON.stringify(seen = await subscribers()) === JSON.stringify(expected(0)), 'no subscriber left', waitMs).catch(() => {})
    t.same(seen, expected(0), 'the instances unsubscribed from the sharded channel')
  })

  t.test('two instances, a client on each, for an agent of each master: one stream per agent, the same status on both', async (t) => {
    const { apps } = await instances(t, 2)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const clients = new Map<string, [SseStream, SseStream]>()
    for (const id of ids) clients.set(id, [await a.sse(`/agents/${id}/metrics/stream`), await b.sse(`/agents/${id}/metrics/stream`)])
    for (const id of ids) {
      const owner = await ownerOf(apps, id)
      t.equal(starts(apps, id), 1, `one start of ${id} in the cluster`)
      let statuses: Array<Record<string, unknown>> = []
      await waitFor(async () => {
        statuses = [await a.status(id), await b.status(id)]
        return statuses.every((status) => status.sse_clients === 2) && JSON.stringify(statuses[0]) === JSON.stringify(statuses[1])
      }, `a and b to give the same status of ${id}`, waitMs).catch(() => {})
      t.same(statuses[0], statuses[1], `the status of ${id} is the same on a and b`)
      t.match(statuses[0], { agent_id: id, streaming_active: true, state: 'active', owner: owner.id, sse_clients: 2, task_id: `${owner.id}:task-${owner.adapter.startCalls.findIndex((call) => call.agentId === id) + 1}`, requested_intervals: [1, 1] })
      owner.adapter.push(id, { id })
      const [onA, onB] = clients.get(id)!
      const [first, second] = [await onA.next((event) => event.event === 'metrics'), await onB.next((event) => event.event === 'metrics')]
      t.same([JSON.parse(first.data), JSON.parse(second.data)], [{ id }, { id }], `the sample of ${id} reaches both clients`)
      t.equal(first.id, second.id, 'under the same event id')
    }
    for (const pair of clients.values()) for (const client of pair) client.close()
    await waitFor(() => ids.every((id) => stops(apps, id) === 1), 'one stop per agent', waitMs)
    // The instance that does not own an agent hears of its stop within a renewal period.
    for (const id of ids) {
      for (const app of apps) {
        let status: Record<string, unknown> = {}
        await waitFor(async () => (status = await app.status(id)).state === 'idle', `${id} idle on ${app.id}`, waitMs).catch(() => {})
        t.match(status, { state: 'idle', sse_clients: 0, owner: null }, `${id} idle on ${app.id}`)
      }
    }
    t.same(liveTasks(apps), [])
  })

  t.test('the owner of agents on all three masters closes: the other instance takes each over, ids keep increasing; a taken lease is given up', async (t) => {
    const { apps, keyPrefix } = await instances(t, 2)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const onA = await Promise.all(ids.map((id) => a.sse(`/agents/${id}/metrics/stream`)))
    for (const id of ids) t.equal(await ownerOf(apps, id), a, `a owns ${id}`)
    const onB = await Promise.all(ids.map((id) => b.sse(`/agents/${id}/metrics/stream`)))
    await waitFor(async () => (await Promise.all(ids.map((id) => b.status(id)))).every((status) => status.sse_clients === 2), 'two clients of each agent', waitMs)
    for (const id of ids) a.adapter.push(id, { before: id })
    const lastBefore = await Promise.all(onB.map((client) => client.next((event) => event.event === 'metrics', `a sample on ${client.url}`)))

    await a.app.close()
    for (const client of onA) t.same(JSON.parse((await client.next((event) => event.event === 'end')).data), { reason: 'server-shutdown' })
    t.equal(ids.reduce((sum, id) => sum + a.adapter.stopsFor(id), 0), 3, 'the closing owner stopped its three tasks')
    await waitFor(() => ids.every((id) => b.adapter.startsFor(id) === 1), 'b to start all three agents', waitMs)
    for (const [index, id] of ids.entries()) {
      b.adapter.push(id, { after: id })
      const after = await onB[index]!.next((event) => event.event === 'metrics', `the sample of ${id} after the handover`)
      t.same(JSON.parse(after.data), { after: id })
      t.ok(Number(after.id) > Number(lastBefore[index]!.id), `${id}: id ${after.id} after ${lastBefore[index]!.id}, across the change of owner`)
      t.match(await b.status(id), { state: 'active', owner: 'b', sse_clients: 1 })
    }

    // A partition as Redis sees it: the lease of the first agent expired and someone else took it.
    const [taken] = ids as [string]
    const intruder = redis.connect()
    t.teardown(() => intruder.disconnect())
    await intruder.set(`${keyPrefix}{${taken}}:owner`, 'elsewhere', 'PX', 1500)
    await waitFor(() => b.adapter.stopsFor(taken) === 1, `b to stop ${taken} once its lease is taken`, waitMs)
    await waitFor(() => b.adapter.startsFor(taken) === 2, `b to take ${taken} again once the foreign lease expired`, waitMs)
    await sleep(renewMs)
    t.equal(liveTasks([b], taken).length, 1, `one live stream of ${taken}`)
    for (const id of ids.slice(1)) t.equal(b.adapter.stopsFor(id), 0, `${id} (another master) kept its stream`)
    for (const client of onB) client.close()
    await waitFor(() => liveTasks(apps).length === 0, 'every stream stopped', waitMs)
  })

  t.test('a fleet connection streams agents of three masters owned by two instances, and resumes on the other instance', async (t) => {
    const { apps } = await instances(t, 2)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    const [first, second, third] = ids as [string, string, string]
    const owned = [await a.sse(`/agents/${first}/metrics/stream`), await b.sse(`/agents/${second}/metrics/stream`), await b.sse(`/agents/${third}/metrics/stream`)]
    const owners = new Map([[first, await ownerOf(apps, first)], [second, await ownerOf(apps, second)], [third, await ownerOf(apps, third)]])
    t.same([...owners.values()].map((app) => app.id), ['a', 'b', 'b'], 'the first agent owned by a, the others by b')
    const fleet = await a.sse(`/metrics/stream?agents=${ids.join(',')}`)
    t.equal(fleet.statusCode, 200)
    // An instance replays what it received while it had clients of the agent (README "Event ids"): b watches all three too.
    const watcher = await b.sse(`/metrics/stream?agents=${ids.join(',')}`)
    await waitFor(async () => (await Promise.all(ids.map((id) => b.status(id)))).every((status) => status.sse_clients === 3), 'both fleet clients counted for each agent', waitMs)
    await waitFor(() => ids.every((id) => fleet.events.some((event) => event.event === 'status' && JSON.parse(event.data).agent_id === id)), 'a status event per agent', waitMs)

    // One sample at a time, round the three masters: one id sequence on the connection.
    const pushed: string[] = []
    for (let n = 1; n <= 6; n++) {
      const id = ids[n % 3]!
      owners.get(id)!.adapter.push(id, { n })
      pushed.push(`${id}:${n}`)
      await waitFor(() => metricsOf(fleet).length === n && metricsOf(watcher).length === n, `sample ${n} on both fleet connections`, waitMs)
    }
    const samples = metricsOf(fleet).map((event) => ({ id: Number(event.id), ...JSON.parse(event.data) as { agent_id: string, metrics: { n: number } } }))
    t.same(samples.map((sample) => `${sample.agent_id}:${sample.metrics.n}`), pushed, 'every sample of every agent, in order')
    t.ok(samples.every((sample, index) => Number.isSafeInteger(sample.id) && (index === 0 || sample.id > samples[index - 1]!.id)), `ids strictly increase on the connection: ${samples.map((sample) => sample.id).join(', ')}`)
    t.same(metricsOf(watcher).map((event) => event.id), metricsOf(fleet).map((event) => event.id), 'the same ids on both instances')
    t.equal(liveTasks(apps).length, 3, 'one stream per agent in the cluster')

    // A load-balanced reconnect: the same Last-Event-ID on b resumes every agent after it.
    const resumed = await b.sse(`/metrics/stream?agents=${ids.join(',')}`, { 'last-event-id': String(samples[2]!.id) })
    await waitFor(() => metricsOf(resumed).length >= 3, 'the three samples after the given id', waitMs)
    t.same(metricsOf(resumed).map((event) => JSON.parse(event.data)).map((data: { agent_id: string, metrics: { n: number } }) => `${data.agent_id}:${data.metrics.n}`).sort(), pushed.slice(3).sort(), 'replayed: the samples after the id, of every agent')
    t.same(resumed.events.filter((event) => event.event === 'gap'), [], 'no gap')
    for (const client of [...owned, fleet, watcher, resumed]) client.close()
    await waitFor(() => liveTasks(apps).length === 0, 'every stream stopped', waitMs)
  })

  // Last: it changes the cluster's layout (the other tests pick their agents from the layout at the start).
  t.test('resharding while streaming: an agent\'s slot moves to another master; its stream, lease and clients carry on', async (t) => {
    const { apps, keyPrefix } = await instances(t, 2)
    const [a, b] = apps as [ClusterApp, ClusterApp]
    // The moving agent's slot goes to the master of another agent the same instance owns: its renewal groups merge.
    const [moving, staying] = [agents[0]!, agents[1]!]
    const clients = [await a.sse(`/agents/${moving.id}/metrics/stream`), await a.sse(`/agents/${staying.id}/metrics/stream`), await b.sse(`/agents/${moving.id}/metrics/stream`)]
    t.equal(await ownerOf(apps, moving.id), a)
    t.equal(await ownerOf(apps, staying.id), a)
    await waitFor(async () => (await b.status(moving.id)).sse_clients === 2, 'b to count both clients of the moving agent', waitMs)
    const [onA, , onB] = clients as [SseStream, SseStream, SseStream]
    // Which of the two agents' streams started first depends on which subscription Redis confirmed first.
    const movingTask = (await a.status(moving.id)).task_id as string
    a.adapter.push(moving.id, { n: 0 })
    for (const client of [onA, onB]) await waitFor(() => metricsOf(client).length === 1, `the first sample on ${client.url}`, waitMs)

    const slot = calculateSlot(moving.id)
    await cluster.moveSlot(slot, staying.node)
    t.equal(cluster.nodeOf(`{${moving.id}}`), staying.node, `slot ${slot} of ${moving.id} moved from ${label(moving.node)} to ${label(staying.node)}`)
    const movedAt = Date.now()

    // A sample now and then, until both clients have one pushed after the move and two renewals have passed.
    let n = 0
    await waitFor(async () => {
      a.adapter.push(moving.id, { n: ++n })
      await sleep(100)
      return Date.now() - movedAt > renewMs * 2 && [onA, onB].every((client) => metricsOf(client).some((event) => JSON.parse(event.data).n === n - 1))
    }, 'samples pushed after the move to reach both instances\' clients', waitMs + renewMs * 2)
    for (const client of [onA, onB]) {
      const ids = metricsOf(client).map((event) => Number(event.id))
      t.ok(ids.every((id, index) => index === 0 || id > ids[index - 1]!), `ids keep increasing on ${client.url}`)
    }
    t.equal(starts(apps, moving.id), 1, 'no second start')
    t.equal(stops(apps, moving.id), 0, 'no stop')
    t.same(liveTasks(apps).sort(), ['a:task-1', 'a:task-2'].sort(), 'the same two tasks live')
    for (const app of apps) t.match(await app.status(moving.id), { state: 'active', owner: 'a', task_id: movingTask, sse_clients: 2 }, `status on ${app.id}`)
    const [owner] = await redis.keys(`${keyPrefix}{${moving.id}}:owner`)
    t.equal(owner, `${keyPrefix}{${moving.id}}:owner`, 'the lease is still there')
    t.same(await cluster.node(staying.node).keys(`${keyPrefix}{${moving.id}}:*`).then((keys) => keys.includes(`${keyPrefix}{${moving.id}}:owner`)), true, 'on the new master')
    const channel = `${keyPrefix}{${moving.id}}:s`
    let perNode: number[] = []
    await waitFor(async () => {
      perNode = await Promise.all(cluster.nodes.map(async (node) => (await cluster.node(node).pubsub('SHARDNUMSUB', channel) as [string, number])[1]))
      return perNode[cluster.nodes.indexOf(staying.node)] === 2
    }, 'both instances subscribed on the new master', waitMs).catch(() => {})
    t.same(perNode, cluster.nodes.map((node) => node === staying.node ? 2 : 0), `sharded subscribers of ${channel} per node`)

    for (const client of clients) client.close()
    await waitFor(() => liveTasks(apps).length === 0, 'every stream stopped', waitMs)
  })
})
