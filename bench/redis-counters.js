// Redis's own counters for bench/cluster.js, summed over the nodes (one, or the masters of a Redis
// Cluster): commands run inside Redis (INFO commandstats, commands run by scripts included, INFO itself
// excluded), bytes in and out (INFO stats), CPU (INFO cpu); and `sent`, what the instances' ioredis
// clients in this process sent, counted where ioredis sends a command (a script call is one).
import { performance } from 'node:perf_hooks'
import { Redis } from 'ioredis'

let sent = 0
let lastRenewalSentAt = -Infinity
const sendCommand = Redis.prototype.sendCommand
Redis.prototype.sendCommand = function (command, ...rest) {
  if (!this.benchProbe) {
    sent++
    if (isRenewal(command)) lastRenewalSentAt = performance.now()
  }
  return sendCommand.call(this, command, ...rest)
}

/**
 * A renewal is one script call over all of an instance's agents (on a Redis Cluster one per node), with at least
 * six arguments per agent, plus a ZADD of the index of streamed agents; a demand change is a script call with
 * eleven arguments in all (one agent's three keys and six values).
 */
function isRenewal (command) {
  if (command?.name === 'zadd') return true
  return (command?.name === 'evalsha' || command?.name === 'eval') && command.args.length > 16
}

/** When an instance of this process last sent a renewal (performance.now()). */
export function lastRenewalSent () {
  return lastRenewalSentAt
}

async function nodeCounters (probe) {
  const [stats, commands, cpu] = await Promise.all([probe.info('stats'), probe.info('commandstats'), probe.info('cpu')])
  const seconds = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)[1])
  const field = (name) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(stats)[1])
  const byCommand = {}
  for (const match of commands.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] !== 'info') byCommand[match[1]] = Number(match[2])
  }
  return { byCommand, in: field('total_net_input_bytes'), out: field('total_net_output_bytes'), cpuMs: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000 }
}

/** The counters now, summed over every node. */
export async function counters (probes) {
  const nodes = await Promise.all(probes.map(nodeCounters))
  const total = { calls: 0, byCommand: {}, top: sent, in: 0, out: 0, cpuMs: 0 }
  for (const node of nodes) {
    for (const [name, calls] of Object.entries(node.byCommand)) {
      total.byCommand[name] = (total.byCommand[name] ?? 0) + calls
      total.calls += calls
    }
    total.in += node.in
    total.out += node.out
    total.cpuMs += node.cpuMs
  }
  return total
}

export function delta (after, before) {
  const byCommand = {}
  for (const [name, calls] of Object.entries(after.byCommand)) {
    const change = calls - (before.byCommand[name] ?? 0)
    if (change > 0) byCommand[name] = change
  }
  return { calls: after.calls - before.calls, top: after.top - before.top, in: after.in - before.in, out: after.out - before.out, cpuMs: after.cpuMs - before.cpuMs, byCommand }
}

/** a − b × scale, field by field (b is usually the probes' own cost). */
export function minus (a, b, scale = 1) {
  return { calls: a.calls - b.calls * scale, top: a.top - b.top * scale, in: a.in - b.in * scale, out: a.out - b.out * scale, cpuMs: a.cpuMs - b.cpuMs * scale, byCommand: a.byCommand }
}

/** What two back-to-back reads of the counters cost by themselves (their requests and replies): the median of five. */
export async function probeCost (probes) {
  const samples = []
  for (let i = 0; i < 5; i++) {
    const before = await counters(probes)
    samples.push(delta(await counters(probes), before))
  }
  samples.sort((x, y) => x.out - y.out)
  return samples[2]
}
