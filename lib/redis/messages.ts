import type { AgentSseErrorBody } from '../errors.js'
import { parseInfo, validEventId, validInterval, type StreamInfo } from './records.js'

/**
 * What travels on an agent's channel (`<prefix>{<agentId>}:s`, the channel names the agent). Line-separated
 * fields: JSON never contains a raw newline, so a task id or a sample cannot break the framing, and the
 * sample's JSON text is forwarded as the owner serialised it.
 */
export type AgentMessage =
  | { kind: 'sample', eventId: number, intervalSeconds: number, json: string }
  /** The owner's description of the stream; `at` is Redis's clock when it was written. */
  | { kind: 'info', at: number, info: StreamInfo }
  | { kind: 'end', taskId: string | null, reason: string }
  | { kind: 'fail', taskId: string | null, error: AgentSseErrorBody }
  /** A stop on some instance: every instance drops its manual hold on the agent. */
  | { kind: 'release' }
  /** A demand change: the agent's live demand records as the change left them (`fields` as a read returns them). */
  | { kind: 'demand', at: number, fields: unknown[] }

/** The part of a sample message the owner sends; Redis prepends the event id it assigns. */
export function samplePayload (intervalSeconds: number, json: string): string {
  return `${intervalSeconds}\n${json}`
}

export function encodeMessage (message: Extract<AgentMessage, { kind: 'end' | 'fail' | 'release' }>): string {
  switch (message.kind) {
    case 'end': return `e\n${JSON.stringify(message.taskId)}\n${JSON.stringify(message.reason)}`
    case 'fail': return `f\n${JSON.stringify(message.taskId)}\n${JSON.stringify(message.error)}`
    case 'release': return 'r'
  }
}

/** Null for anything malformed: a foreign publisher on our channel must not break an instance. */
export function decodeMessage (text: string): AgentMessage | null {
  try {
    const fields = text.split('\n')
    switch (fields[0]) {
      case 's': {
        // s, id, interval, then the sample (the rest, in case a future field joins).
        const eventId = Number(fields[1])
        const intervalSeconds = Number(fields[2])
        const json = fields.slice(3).join('\n')
        if (!validEventId(eventId) || !validInterval(intervalSeconds) || json === '') return null
        return { kind: 'sample', eventId, intervalSeconds, json }
      }
      case 'i': {
        const at = Number(fields[1])
        const info = parseInfo(fields.slice(2).join('\n'))
        return Number.isSafeInteger(at) && info !== null ? { kind: 'info', at, info } : null
      }
      case 'e': {
        const taskId = JSON.parse(fields[1]!)
        const reason = JSON.parse(fields[2]!)
        return (taskId === null || typeof taskId === 'string') && typeof reason === 'string' ? { kind: 'end', taskId, reason } : null
      }
      case 'f': {
        const taskId = JSON.parse(fields[1]!)
        const error = JSON.parse(fields[2]!)
        return (taskId === null || typeof taskId === 'string') && typeof error?.message === 'string' ? { kind: 'fail', taskId, error } : null
      }
      case 'r': return fields.length === 1 ? { kind: 'release' } : null
      case 'd': {
        const at = Number(fields[1])
        const demand = JSON.parse(fields.slice(2).join('\n'))
        return Number.isSafeInteger(at) && Array.isArray(demand) ? { kind: 'demand', at, fields: demand } : null
      }
    }
  } catch {}
  return null
}

/**
 * Point-to-point, on an instance's inbox channel: a cancel, and its answer; and a demand change for the owner from
 * an instance of an older version (demand changes now travel on the agent's channel).
 */
export type InboxMessage =
  /** `at` (Redis's clock) and `fields` (the live demand records, as a read returns them) come from the change itself. */
  | { op: 'demand', agentId: string, at?: number, fields?: unknown[] }
  | { op: 'cancel', requestId: string, from: string, agentId: string, taskId: string }
  | { op: 'cancelled', requestId: string, found: boolean }

export function decodeInbox (text: string): InboxMessage | null {
  try {
    const message = JSON.parse(text)
    if (message?.op === 'demand' && typeof message.agentId === 'string') {
      // Without both (an older instance sent it, or they are malformed) the owner reads the demand itself.
      if (!Number.isSafeInteger(message.at) || !Array.isArray(message.fields)) return { op: 'demand', agentId: message.agentId }
      return { op: 'demand', agentId: message.agentId, at: message.at, fields: message.fields }
    }
    if (message?.op === 'cancel' && typeof message.requestId === 'string' && typeof message.from === 'string' && typeof message.agentId === 'string' && typeof message.taskId === 'string') return message
    if (message?.op === 'cancelled' && typeof message.requestId === 'string' && typeof message.found === 'boolean') return message
  } catch {}
  return null
}
