// The adapter of every bench/cluster.js instance (in this process, or bench/cluster-instance.js): every
// agent exists; a task pushes one sample as soon as it has started (so that the first sample of a new
// owner times a failover), and then only what the bench pushes through `tasks.get(agentId).push()`.
// The first sample names the instance that streams it. No `changeInterval`: a new interval is a stop and a start
// (see bench/cluster.js on why).
export function benchAdapter (instanceId) {
  const tasks = new Map() // agentId -> { taskId, push(sample) }
  let sequence = 0
  return {
    tasks,
    async startMetricsStreaming (agentId, _options, sink) {
      const taskId = `${instanceId}:t${++sequence}`
      const push = (sample) => sink.push(sample)
      tasks.set(agentId, { taskId, push })
      // Once the start has resolved, as a real agent sends its first sample after acknowledging the start.
      setTimeout(() => { if (tasks.get(agentId)?.taskId === taskId) push({ instance: instanceId, first: true }) }, 0)
      return { taskId }
    },
    async stopMetricsStreaming (agentId, taskId) {
      if (tasks.get(agentId)?.taskId === taskId) tasks.delete(agentId)
    },
    async getCurrentMetrics () { return {} }
  }
}
