import type { StreamState } from '../lifecycle/types.js'

/**
 * What the cluster keeps in Redis, and its validation: nothing read from Redis is trusted (another program,
 * an older version or a bug may have written it). A record that does not pass is dropped, and the caller logs it.
 */

/** One instance's demand for an agent, as it keeps it in the agent's demand hash. */
export interface InstanceDemand {
  /** Subscribers on the instance. */
  c: number
  /** [interval, subscribers asking for it] pairs. */
  i: Array<[number, number]>
  /** The instance's manual hold interval, or null. */
  h: number | null
  /** The newest event id the instance has seen (a floor for ids after Redis lost its counter). */
  e: number
}

/** What an owner publishes about a stream it runs. */
export interface StreamInfo {
  /** The owner's instance id. */
  o: string
  s: StreamState
  /** Task id. */
  t: string | null
  /** Interval in seconds. */
  v: number | null
  /** Started at (ISO date, the owner's clock). */
  a: string | null
}

/** Bounds on what a record may say; above them it is not ours. */
const maxCount = 1_000_000
const maxIntervalSeconds = 1_000_000
const maxIntervalPairs = 1000
/** Event ids count samples: 2^48 is a million samples a second for eight years. Above it an id is forged. */
export const maxEventId = 2 ** 48

const states = new Set<string>(['idle', 'starting', 'active', 'lingering', 'stopping'])

export function validInterval (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= maxIntervalSeconds
}

export function validEventId (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= maxEventId
}

function validCount (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= maxCount
}

export function encodeDemand (demand: InstanceDemand): string {
  return JSON.stringify(demand)
}

/** A demand field's value, `<deadline>|<json>`: null unless every number is in bounds and the counts add up. */
export function parseDemand (value: unknown): InstanceDemand | null {
  if (typeof value !== 'string') return null
  const bar = value.indexOf('|')
  if (bar < 0) return null
  let demand: unknown
  try {
    demand = JSON.parse(value.slice(bar + 1))
  } catch {
    return null
  }
  if (typeof demand !== 'object' || demand === null) return null
  const { c, i, h, e } = demand as Record<string, unknown>
  if (!validCount(c) || !Array.isArray(i) || i.length > maxIntervalPairs) return null
  if (h !== null && !validInterval(h)) return null
  if (e !== 0 && !validEventId(e)) return null
  let sum = 0
  for (const pair of i) {
    if (!Array.isArray(pair) || pair.length !== 2 || !validInterval(pair[0]) || !validCount(pair[1]) || pair[1] === 0) return null
    sum += pair[1]
  }
  if (sum !== c) return null
  return { c, i: i as Array<[number, number]>, h, e: e as number }
}

export function encodeInfo (info: StreamInfo): string {
  return JSON.stringify(info)
}

export function parseInfo (text: unknown): StreamInfo | null {
  if (typeof text !== 'string') return null
  let info: unknown
  try {
    info = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof info !== 'object' || info === null) return null
  const { o, s, t, v, a } = info as Record<string, unknown>
  if (typeof o !== 'string' || typeof s !== 'string' || !states.has(s)) return null
  if (t !== null && typeof t !== 'string') return null
  if (v !== null && !validInterval(v)) return null
  if (a !== null && typeof a !== 'string') return null
  return { o, s: s as StreamState, t, v, a }
}

/** A task record: who ran which task, so that a successor can stop it. */
export function taskRecord (owner: string, taskId: string): string {
  return JSON.stringify({ owner, taskId })
}

export function parseTaskRecord (text: unknown): { owner: string, taskId: string } | null {
  if (typeof text !== 'string') return null
  try {
    const task = JSON.parse(text)
    return typeof task?.owner === 'string' && typeof task.taskId === 'string' ? { owner: task.owner, taskId: task.taskId } : null
  } catch {
    return null
  }
}
