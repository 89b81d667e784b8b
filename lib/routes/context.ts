import type { FastifyRequest } from 'fastify'
import { FST_ERR_AGENT_SSE_UNKNOWN_AGENT } from '../errors.js'
import type { StreamLifecycle } from '../lifecycle/stream-lifecycle.js'
import type { ResolvedOptions } from '../options.js'

export interface RouteContext {
  lifecycle: StreamLifecycle
  options: ResolvedOptions
}

/** preHandler for every `/agents/:agentId/*` route: 404 when the adapter says the agent is unknown. */
export function agentMustExist (lifecycle: StreamLifecycle) {
  return async function ensureAgentExists (request: FastifyRequest): Promise<void> {
    const { agentId } = request.params as { agentId: string }
    if (!(await lifecycle.agentExists(agentId))) throw new FST_ERR_AGENT_SSE_UNKNOWN_AGENT(agentId)
  }
}
