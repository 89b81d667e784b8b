import type { FastifyInstance } from 'fastify'
import type { RouteContext } from './context.js'
import { registerControlRoutes } from './control-routes.js'
import { registerStreamRoute } from './stream-route.js'

/** The encapsulated routes plugin, registered under the user's `prefix`. */
export async function agentSseRoutes (app: FastifyInstance, context: RouteContext): Promise<void> {
  registerStreamRoute(app, context)
  registerControlRoutes(app, context)
}
