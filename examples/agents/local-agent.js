// The built-in "local" agent: real metrics of this machine and this process, collected
// only while a task is running. It needs nothing external, so the example works anywhere.
import { randomUUID } from 'node:crypto'
import os from 'node:os'
import { performance } from 'node:perf_hooks'

const round = (value, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits

export function createLocalAgent ({ id = 'local', log }) {
  const tasks = new Map()

  function collector () {
    let cpus = os.cpus().map((cpu) => cpu.times)
    let elu = performance.eventLoopUtilization()
    return function sample () {
      const nowCpus = os.cpus().map((cpu) => cpu.times)
      const perCore = nowCpus.map((times, i) => {
        const before = cpus[i] ?? times
        const busy = (times.user - before.user) + (times.nice - before.nice) + (times.sys - before.sys) + (times.irq - before.irq)
        const total = busy + (times.idle - before.idle)
        return total > 0 ? round((busy / total) * 100) : 0
      })
      cpus = nowCpus
      const eluNow = performance.eventLoopUtilization(elu)
      elu = performance.eventLoopUtilization()
      const memory = process.memoryUsage()
      const [load1, load5, load15] = os.loadavg()
      return {
        agent_id: id,
        timestamp: new Date().toISOString(),
        cpu_percent: round(perCore.reduce((sum, value) => sum + value, 0) / Math.max(1, perCore.length)),
        cpu_per_core: perCore,
        load_1m: round(load1, 2),
        load_average: [round(load1, 2), round(load5, 2), round(load15, 2)],
        memory_percent: round((1 - os.freemem() / os.totalmem()) * 100),
        memory_used_mb: Math.round((os.totalmem() - os.freemem()) / 2 ** 20),
        process_rss_mb: round(memory.rss / 2 ** 20),
        heap_used_mb: round(memory.heapUsed / 2 ** 20),
        event_loop_utilization: round(eluNow.utilization * 100, 2)
      }
    }
  }

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
