// Real metrics of this machine and this process, shared by the example's built-in "local"
// agent and the remote agent process.
import os from 'node:os'
import { performance } from 'node:perf_hooks'

const round = (value, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits

/** A sampler with its own baselines: each call reports CPU use and event-loop utilisation since the previous call. */
export function createHostSampler (agentId) {
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
    const eluSince = performance.eventLoopUtilization(elu)
    elu = performance.eventLoopUtilization()
    const memory = process.memoryUsage()
    const [load1, load5, load15] = os.loadavg()
    return {
      agent_id: agentId,
      hostname: os.hostname(),
      timestamp: new Date().toISOString(),
      cpu_percent: round(perCore.reduce((sum, value) => sum + value, 0) / Math.max(1, perCore.length)),
      cpu_per_core: perCore,
      load_1m: round(load1, 2),
      load_average: [round(load1, 2), round(load5, 2), round(load15, 2)],
      memory_percent: round((1 - os.freemem() / os.totalmem()) * 100),
      memory_used_mb: Math.round((os.totalmem() - os.freemem()) / 2 ** 20),
      process_rss_mb: round(memory.rss / 2 ** 20),
      heap_used_mb: round(memory.heapUsed / 2 ** 20),
      event_loop_utilization: round(eluSince.utilization * 100, 2)
    }
  }
}
