// Simulated remote agents, each with its own shape of load (examples/agents/load-shapes.js).
// Like real agents they only "collect" while a task runs, and log when they start and stop.
import { randomUUID } from 'node:crypto'
import { loadShapes, noise, shapeNames } from './load-shapes.js'

const round = (value, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits

/** The shape agent number `index` (0-based) of the fleet gets: the shapes in turn. */
export function shapeOf (index) {
  return shapeNames[index % shapeNames.length]
}

export function createSimulatedAgents ({ agentIds, log }) {
  const agents = new Map(agentIds.map((id, index) => [id, {
    id,
    seed: index + 1,
    shape: shapeOf(index),
    // Spread agents of one shape over its cycle (the golden ratio never repeats a phase).
    phase: (index * 0.618034) % 1,
    tasks: new Map()
  }]))

  function reading (agent) {
    const now = Date.now()
    const t = now / 1000
    const { cpu, memory, online = true } = loadShapes[agent.shape](t, agent.phase, agent.seed)
    const sample = {
      agent_id: agent.id,
      timestamp: new Date(now).toISOString(),
      load_shape: agent.shape,
      cpu_percent: round(Math.min(100, Math.max(0, cpu))),
      memory_percent: round(Math.min(100, Math.max(0, memory))),
      // A 4-core machine: load follows CPU use.
      load_1m: round(0.1 + cpu * 0.04, 2),
      network_rx_kbps: Math.round(40 + cpu * 10 * (0.5 + noise(agent.seed + 7, Math.floor(t))))
    }
    return { online, sample }
  }

  function schedule (agent, task, intervalSeconds) {
    clearInterval(task.timer)
    task.timer = setInterval(() => {
      const { online, sample } = reading(agent)
      // An unreachable agent sends nothing: the dashboard sees the gap.
      if (online) task.sink.push(sample)
    }, intervalSeconds * 1000)
  }

  function stopCollecting (agent, taskId) {
    const task = agent.tasks.get(taskId)
    if (!task) return
    clearInterval(task.timer)
    agent.tasks.delete(taskId)
    log.info(`agent ${agent.id}: collecting stopped (task ${taskId})`)
  }

  return {
    /** Each agent's shape of load, by agent id. */
    shapes: Object.fromEntries([...agents.values()].map((agent) => [agent.id, agent.shape])),

    agentExists (agentId) {
      return agents.has(agentId)
    },

    async startMetricsStreaming (agentId, { intervalSeconds, signal }, sink) {
      const agent = agents.get(agentId)
      const taskId = randomUUID()
      const task = { sink, timer: undefined }
      schedule(agent, task, intervalSeconds)
      agent.tasks.set(taskId, task)
      // The plugin aborts the signal when it no longer wants the task; stopping is idempotent.
      signal.addEventListener('abort', () => stopCollecting(agent, taskId), { once: true })
      log.info(`agent ${agentId}: collecting started (task ${taskId}, every ${intervalSeconds}s)`)
      return { taskId }
    },

    async stopMetricsStreaming (agentId, taskId) {
      stopCollecting(agents.get(agentId), taskId)
    },

    async changeInterval (agentId, taskId, intervalSeconds) {
      const agent = agents.get(agentId)
      const task = agent.tasks.get(taskId)
      if (!task) throw new Error(`agent ${agentId} has no task ${taskId}`)
      schedule(agent, task, intervalSeconds)
      log.info(`agent ${agentId}: collecting every ${intervalSeconds}s now (task ${taskId})`)
    },

    async getCurrentMetrics (agentId) {
      const { online, sample } = reading(agents.get(agentId))
      if (!online) throw new Error(`agent ${agentId} is unreachable (it flaps)`)
      return sample
    }
  }
}
