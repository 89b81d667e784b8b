import type { AgentSseErrorBody } from '../errors.js'

/**
 * What travels on the cluster's broadcast channel. Line-separated fields: JSON never
 * contains a raw newline, so an agent id or a sample cannot break the framing, and
 * the sample's JSON text is forwarded as the owner serialised it.
 */
export type ClusterMessage =
  | { kind: 'sample', agentId: string, eventId: number, intervalSeconds: number, json: string }
  | { kind: 'end', agentId: string, reason: string }
  | { kind: 'fail', agentId: string, error: AgentSseErrorBody }
  /** An instance's state changed: read the cluster again. */
  | { kind: 'changed', instanceId: string }
  /** A stop on some instance: every instance drops its manual hold on the agent. */
  | { kind: 'release', agentId: string }

/** The part of a sample message the owner sends; Redis prepends the event id it assigns. */
export function samplePayload (agentId: string, intervalSeconds: number, json: string): string {
  return `${JSON.stringify(agentId)}\n${intervalSeconds}\n${json}`
}

export function encodeMessage (message: Exclude<ClusterMessage, { kind: 'sample' }>): string {
  switch (message.kind) {
    case 'end': return `e\n${JSON.stringify(message.agentId)}\n${JSON.stringify(message.reason)}`
    case 'fail': return `f\n${JSON.stringify(message.agentId)}\n${JSON.stringify(message.error)}`
    case 'changed': return `c\n${JSON.stringify(message.instanceId)}`
    case 'release': return `r\n${JSON.stringify(message.agentId)}`
  }
}

/** Null for anything malformed: a foreign publisher on our channel must not break an instance. */
export function decodeMessage (text: string): ClusterMessage | null {
  try {
    const fields = text.split('\n')
    switch (fields[0]) {
      case 's': {
        // s, id, agent, interval, then the sample (the rest, in case a future field joins).
        const eventId = Number(fields[1])
        const intervalSeconds = Number(fields[3])
        const agentId = JSON.parse(fields[2]!)
        const json = fields.slice(4).join('\n')
        if (!Number.isSafeInteger(eventId) || eventId <= 0 || !(intervalSeconds > 0) || typeof agentId !== 'string' || json === '') return null
        return { kind: 'sample', agentId, eventId, intervalSeconds, json }
      }
      case 'e': {
        const agentId = JSON.parse(fields[1]!)
        const reason = JSON.parse(fields[2]!)
        return typeof agentId === 'string' && typeof reason === 'string' ? { kind: 'end', agentId, reason } : null
      }
      case 'f': {
        const agentId = JSON.parse(fields[1]!)
        const error = JSON.parse(fields[2]!)
        return typeof agentId === 'string' && typeof error?.message === 'string' ? { kind: 'fail', agentId, error } : null
      }
      case 'c': {
        const instanceId = JSON.parse(fields[1]!)
        return typeof instanceId === 'string' ? { kind: 'changed', instanceId } : null
      }
      case 'r': {
        const agentId = JSON.parse(fields[1]!)
        return typeof agentId === 'string' ? { kind: 'release', agentId } : null
      }
    }
  } catch {}
  return null
}

/** Point-to-point, on an instance's inbox channel: a cancel for the owner, and its answer. */
export type InboxMessage =
  | { op: 'cancel', requestId: string, from: string, agentId: string, taskId: string }
  | { op: 'cancelled', requestId: string, found: boolean }

export function decodeInbox (text: string): InboxMessage | null {
  try {
    const message = JSON.parse(text)
    if (message?.op === 'cancel' && typeof message.requestId === 'string' && typeof message.from === 'string' && typeof message.agentId === 'string' && typeof message.taskId === 'string') return message
    if (message?.op === 'cancelled' && typeof message.requestId === 'string' && typeof message.found === 'boolean') return message
  } catch {}
  return null
}
