// An AgentAdapter over simulated agents, so the example runs with nothing external.
// Each agent "collects" only while it has a streaming task, and logs when it starts
// and stops collecting: watch those lines while clients come and go.
import { randomUUID } from 'node:crypto'

export function createSimulatedAgents ({ agentIds, log }) {
  const agents = new Map(agentIds.map((id, index) => [id, { id, seed: index + 1, tasks: new Map() }]))

  function sample (agent) {
    const t = Date.now() / 1000
    const wave = (period, phase = 0) => (Math.sin((t / period) + agent.seed + phase) + 1) / 2
    return {
      agent_id: agent.id,
      timestamp: new Date().toISOString(),
      cpu_percent: Math.round((15 + 60 * wave(20) + 10 * Math.random()) * 10) / 10,
      memory_percent: Math.round((40 + 30 * wave(90, 1)) * 10) / 10,
      load_average: Math.round((0.5 + 2 * wave(45, 2)) * 100) / 100,
      network_rx_kbps: Math.round(200 + 800 * wave(15, 3) * Math.random())
    }
  }

  return {
    agentExists (agentId) {
      return agents.has(agentId)
    },

    async startMetricsStreaming (agentId, { intervalSeconds, signal }, sink) {
      const agent = agents.get(agentId)
      const taskId = randomUUID()
      const timer = setInterval(() => sink.push(sample(agent)), intervalSeconds * 1000)
      agent.tasks.set(taskId, timer)
      // The plugin aborts the signal when it no longer wants the task; stopping is idempotent.
      signal.addEventListener('abort', () => stopCollecting(agent, taskId), { once: true })
      log.info(`agent ${agentId}: collecting started (task ${taskId}, every ${intervalSeconds}s)`)
      sink.push(sample(agent))
      return { taskId }
    },

    async stopMetricsStreaming (agentId, taskId) {
      stopCollecting(agents.get(agentId), taskId)
    },

    async getCurrentMetrics (agentId) {
      return sample(agents.get(agentId))
    }
  }

  function stopCollecting (agent, taskId) {
    const timer = agent.tasks.get(taskId)
    if (!timer) return
    clearInterval(timer)
    agent.tasks.delete(taskId)
    log.info(`agent ${agent.id}: collecting stopped (task ${taskId})`)
  }
}
