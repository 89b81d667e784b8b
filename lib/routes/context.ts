import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import { FST_ERR_AGENT_SSE_FORBIDDEN, FST_ERR_AGENT_SSE_UNKNOWN_AGENT } from '../errors.js'
import type { StreamLifecycle } from '../lifecycle/stream-lifecycle.js'
import type { ResolvedOptions } from '../options.js'

export interface RouteContext {
  lifecycle: StreamLifecycle
  options: ResolvedOptions
}

/** Throws 403 unless the host's `authorizeAgent` (if any) allows the request to touch the agent. */
export async function assertAuthorized ({ options }: RouteContext, request: FastifyRequest, agentId: string): Promise<void> {
  if (options.authorizeAgent && (await options.authorizeAgent(request, agentId)) !== true) {
    throw new FST_ERR_AGENT_SSE_FORBIDDEN(agentId)
  }
}

/**
 * preHandler for every `/agents/:agentId/*` route, so nothing happens for a request
 * that may not see the agent (403) or names an agent the adapter does not know (404).
 */
export function agentGuard (context: RouteContext): preHandlerAsyncHookHandler | undefined {
  // With nothing to check, no hook at all: connection setup is the SSE route's hot path.
  if (!context.options.authorizeAgent && !context.lifecycle.checksAgents) return undefined
  return async function guardAgent (request: FastifyRequest): Promise<void> {
    const { agentId } = request.params as { agentId: string }
    await assertAuthorized(context, request, agentId)
    if (!(await context.lifecycle.agentExists(agentId))) throw new FST_ERR_AGENT_SSE_UNKNOWN_AGENT(agentId)
  }
}
