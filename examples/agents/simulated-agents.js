// Simulated remote agents with plausible, slowly varying metrics. Like real agents they
// only "collect" while a task runs, and log when they start and stop.
import { randomUUID } from 'node:crypto'

export function createSimulatedAgents ({ agentIds, log }) {
  const agents = new Map(agentIds.map((id, index) => [id, { id, seed: index + 1, tasks: new Map() }]))

  function sample (agent) {
    const t = Date.now() / 1000
    const wave = (period, phase = 0) => (Math.sin((t / period) + agent.seed * 2 + phase) + 1) / 2
    const load = 0.5 + 2.5 * wave(45, 2)
    return {
      agent_id: agent.id,
      timestamp: new Date().toISOString(),
      cpu_percent: Math.round((15 + 60 * wave(20) + 10 * Math.random()) * 10) / 10,
      memory_percent: Math.round((40 + 30 * wave(90, 1)) * 10) / 10,
      load_1m: Math.round(load * 100) / 100,
      network_rx_kbps: Math.round(200 + 800 * wave(15, 3) * Math.random())
    }
  }

  function schedule (agent, task, intervalSeconds) {
    clearInterval(task.timer)
    task.timer = setInterval(() => task.sink.push(sample(agent)), intervalSeconds * 1000)
  }

  function stopCollecting (agent, taskId) {
    const task = agent.tasks.get(taskId)
    if (!task) return
    clearInterval(task.timer)
    agent.tasks.delete(taskId)
    log.info(`agent ${agent.id}: collecting stopped (task ${taskId})`)
  }

  return {
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
      return sample(agents.get(agentId))
    }
  }
}
