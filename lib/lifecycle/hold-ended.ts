import { FST_ERR_AGENT_SSE_HOLD_ENDED, FST_ERR_AGENT_SSE_STREAM_ENDED } from '../errors.js'

/**
 * The answer to a manual start whose hold ended while the start was in flight: 409 when the hold was released or
 * the task cancelled (here or, in a cluster, anywhere), 502 with the agent's reason when the agent ended the
 * stream (`agentReason`, else null).
 */
export function holdEndedError (agentId: string, agentReason: string | null): Error {
  return agentReason === null ? new FST_ERR_AGENT_SSE_HOLD_ENDED(agentId) : new FST_ERR_AGENT_SSE_STREAM_ENDED(agentId, agentReason)
}
