import type { StreamState, StreamStatus } from './types.js'

/** Who wants the agent's stream, as a status counts it. */
export interface StatusDemand {
  subscribers: number
  manualHold: boolean
  /** Every subscriber's interval and the hold's, in any order. */
  requestedIntervals: number[]
}

/** The agent's task, as a status describes it. */
export interface StatusTask {
  taskId: string | null
  intervalSeconds: number | null
  /** ISO 8601. */
  startedAt: string | null
}

const noDemand: StatusDemand = { subscribers: 0, manualHold: false, requestedIntervals: [] }

/**
 * The one place a {@link StreamStatus} is put together, for a single process's stream and for a cluster's view of
 * one: an idle agent has no task (and, in a cluster, no owner); the intervals are sorted.
 */
export function streamStatus (agentId: string, state: StreamState, demand: StatusDemand, task: StatusTask | null, owner?: string | null): StreamStatus {
  const streaming = state !== 'idle'
  const status: StreamStatus = {
    agentId,
    streamingActive: streaming,
    state,
    subscribers: demand.subscribers,
    manualHold: demand.manualHold,
    taskId: streaming ? task?.taskId ?? null : null,
    intervalSeconds: streaming ? task?.intervalSeconds ?? null : null,
    startedAt: streaming ? task?.startedAt ?? null : null,
    requestedIntervals: [...demand.requestedIntervals].sort((a, b) => a - b)
  }
  if (owner !== undefined) status.owner = streaming ? owner : null
  return status
}

/** The status of an agent nobody streams. */
export function idleStatus (agentId: string): StreamStatus {
  return streamStatus(agentId, 'idle', noDemand, null)
}
