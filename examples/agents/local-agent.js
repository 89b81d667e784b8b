// The built-in "local" agent: real metrics of this machine and this process, collected
// only while a task is running. It needs nothing external, so the example works anywhere.
import { randomUUID } from 'node:crypto'
import { createHostSampler } from '../host-metrics.js'

export function createLocalAgent ({ id = 'local', log }) {
  const tasks = new Map()
  const collector = () => createHostSampler(id)

  function stopCollecting (taskId) {
    const task = tasks.get(taskId)
    if (!task) return
    clearInterval(task.timer)
    tasks.delete(taskId)
    log.info(`agent ${id}: collecting stopped (task ${taskId})`)
  }

  return {
    id,
    async startMetricsStreaming (_agentId, { intervalSeconds, signal }, sink) {
      const taskId = randomUUID()
      const sample = collector()
      const timer = setInterval(() => sink.push(sample()), intervalSeconds * 1000)
      tasks.set(taskId, { timer, sample, sink })
      signal.addEventListener('abort', () => stopCollecting(taskId), { once: true })
      log.info(`agent ${id}: collecting started (task ${taskId}, every ${intervalSeconds}s)`)
      return { taskId }
    },
    async stopMetricsStreaming (_agentId, taskId) {
      stopCollecting(taskId)
    },
    async changeInterval (_agentId, taskId, intervalSeconds) {
      const task = tasks.get(taskId)
      if (!task) throw new Error(`no task ${taskId}`)
      clearInterval(task.timer)
      task.timer = setInterval(() => task.sink.push(task.sample()), intervalSeconds * 1000)
      log.info(`agent ${id}: collecting every ${intervalSeconds}s now (task ${taskId})`)
    },
    async getCurrentMetrics () {
      // CPU use is a rate: measure it over a short window.
      const sample = collector()
      await new Promise((resolve) => setTimeout(resolve, 200))
      return sample()
    }
  }
}
