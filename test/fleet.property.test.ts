import fc from 'fast-check'
import t from 'tap'
import { assertWithinBudget, envNumber, stress } from './helpers/run-budget.js'
import { startServer, waitFor, type SseStream } from './helpers/server.js'

// Random schedules of fleet and single-agent clients over real sockets: connections opening with
// overlapping sets of agents, closing, and agents pushing samples. Whatever the mix:
// - every agent counts exactly the open connections that watch it (a fleet connection once);
// - a connection receives every sample of its agents pushed while it was open, only those, with
//   ids strictly increasing on the connection;
// - no agent ever runs two tasks, and once everyone has left every agent stops: starts = stops.
// By default as many schedules as fit in 10 s (at least 15); STRESS=1 runs 300.

const STOP_DELAY_MS = 60
const agentNames = ['a1', 'a2', 'a3', 'a4'] as const

type Command =
  | { kind: 'fleet', agents: string[] }
  | { kind: 'single', agent: string }
  | { kind: 'close', pick: number }
  | { kind: 'push', agent: string }
  | { kind: 'wait', ms: number }

const agent = fc.constantFrom(...agentNames)
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('fleet' as const), agents: fc.uniqueArray(agent, { minLength: 1, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('single' as const), agent }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('close' as const), pick: fc.nat(8) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('push' as const), agent }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.constantFrom(5, 40, 120) }) }
)

function receivedAll (client: Client): boolean {
  const received = new Set(client.stream.events.filter((event) => event.event === 'metrics').map((event) => {
    const data = JSON.parse(event.data)
    return (client.fleet ? data.metrics : data).n
  }))
  return [...client.expected].every((n) => received.has(n))
}

interface Client {
  agents: string[]
  fleet: boolean
  stream: SseStream
  /** Samples (by their `n`) pushed to one of its agents while it was open. */
  expected: Set<number>
}

t.test('fleet and single-agent clients mixed at random keep every reference-counting invariant', async (t) => {
  const server = await startServer(t, { stopDelayMs: STOP_DELAY_MS, heartbeatIntervalMs: 0, maxAgentsPerStream: 4 })
  const { adapter, sse } = server
  let run = 0
  let sampleNumber = 0

  const property = fc.asyncProperty(fc.array(command, { minLength: 3, maxLength: 25 }), async (commands) => {
    run++
    const name = (agentId: string) => `r${run}-${agentId}`
    const open: Client[] = []
    const all: Client[] = []
    const live = (agentId: string) => adapter.startCalls.some((call) => call.agentId === agentId && adapter.liveTasks.has(call.taskId))

    for (const step of commands) {
      switch (step.kind) {
        case 'fleet':
        case 'single': {
          const agents = (step.kind === 'fleet' ? step.agents : [step.agent]).map(name)
          const path = step.kind === 'fleet' ? `/metrics/stream?agents=${agents.join(',')}&interval_seconds=1` : `/agents/${agents[0]}/metrics/stream?interval_seconds=1`
          const client = { agents, fleet: step.kind === 'fleet', stream: await sse(path), expected: new Set<number>() }
          if (client.stream.statusCode !== 200) throw new Error(`${path} answered ${client.stream.statusCode}`)
          open.push(client)
          all.push(client)
          break
        }
        case 'close': {
          if (open.length === 0) break
          const [client] = open.splice(step.pick % open.length, 1)
          // What was pushed while it was open is on its way: it leaves once that has arrived.
          await waitFor(() => receivedAll(client!), 'every sample pushed while open', 10_000)
          client!.stream.close()
          break
        }
        case 'push': {
          const agentId = name(step.agent)
          if (!live(agentId)) break
          const n = ++sampleNumber
          adapter.push(agentId, { agent: agentId, n })
          for (const client of open) if (client.agents.includes(agentId)) client.expected.add(n)
          break
        }
        case 'wait':
          await new Promise((resolve) => setTimeout(resolve, step.ms))
      }
    }

    // Quiescent: every agent counts the connections open on it, a live stream exactly when someone watches.
    for (const agentId of agentNames.map(name)) {
      const watching = open.filter((client) => client.agents.includes(agentId)).length
      await waitFor(async () => {
        const status = await server.status(agentId)
        return status.sse_clients === watching && (watching === 0 || (status.state === 'active' && live(agentId)))
      }, `${agentId}: ${watching} clients and a stream while watched`, 10_000)
    }
    for (const client of all) {
      await waitFor(() => receivedAll(client), 'every sample pushed while open', 10_000)
      const metrics = client.stream.events.filter((event) => event.event === 'metrics')
      const ids = metrics.map((event) => Number(event.id))
      if (!ids.every((id, index) => index === 0 || id > ids[index - 1]!)) throw new Error(`ids not increasing: ${ids}`)
      for (const event of metrics) {
        const data = JSON.parse(event.data)
        const sample = client.fleet ? data.metrics : data
        if (!client.agents.includes(sample.agent) || (client.fleet && data.agent_id !== sample.agent)) throw new Error(`a sample of ${sample.agent} reached a client of ${client.agents}`)
      }
    }

    for (const client of open) client.stream.close()
    for (const agentId of agentNames.map(name)) {
      await waitFor(async () => (await server.status(agentId)).state === 'idle', `${agentId} stops once everyone left`, 10_000)
      if (adapter.startsFor(agentId) !== adapter.stopsFor(agentId)) throw new Error(`${agentId}: ${adapter.startsFor(agentId)} starts, ${adapter.stopsFor(agentId)} stops`)
    }
    if (adapter.maxConcurrentPerAgent > 1) throw new Error('an agent ran two tasks at once')
  })

  const explicit = envNumber('PROPERTY_RUNS')
  const outcome = await assertWithinBudget(property, explicit !== undefined || stress
    ? { minRuns: explicit ?? 300, maxRuns: explicit ?? 300, budgetMs: Infinity, hardLimitMs: 20 * 60_000 }
    : { minRuns: 15, maxRuns: 300, budgetMs: 10_000, hardLimitMs: 90_000, seed: envNumber('PROPERTY_SEED'), path: process.env.PROPERTY_PATH || undefined })
  t.comment(`${outcome.runs} schedules in ${outcome.elapsedMs} ms`)
  t.ok(outcome.runs >= 15 || outcome.interrupted, `${outcome.runs} schedules passed`)
})
