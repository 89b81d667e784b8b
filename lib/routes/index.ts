import type { FastifyError, FastifyInstance } from 'fastify'
import { errorBody } from '../errors.js'
import { failureLogFields, isAdapterFailure } from '../lifecycle/adapter-call.js'
import { wasReported } from '../lifecycle/reported-errors.js'
import { retryAfterSeconds, type RouteContext } from './context.js'
import { registerControlRoutes } from './control-routes.js'
import { SseConnections } from './connections.js'
import { registerFleetRoute } from './fleet-route.js'
import { addSharedSchemas, validationErrorFormatter } from './schemas.js'
import { registerStreamRoute } from './stream-route.js'

/** One open SSE connection, as `app.sseConnections()` reports it. */
export interface SseConnectionInfo {
  /** The request id of the SSE request. */
  id: string
  agentIds: string[]
  /** Bytes queued for the client in user space. */
  bufferedBytes: number
  /** The client's queue is over `maxBufferedBytes`: it gets conflated frames until it drains. */
  blocked: boolean
  /** How long the client has not been draining (0 while it keeps up). */
  blockedForMs: number
}

/** What the plugin (at the host's level) needs of the routes' SSE connections; filled in by the routes. */
export interface ConnectionsHandle {
  list: () => SseConnectionInfo[]
  closeAll: () => void
}

export interface RoutesOptions extends RouteContext {
  connectionsHandle: ConnectionsHandle
}

/** The encapsulated routes plugin, registered under the user's `prefix`. */
export async function agentSseRoutes (app: FastifyInstance, { connectionsHandle, ...context }: RoutesOptions): Promise<void> {
  // In this scope only: a POST with `Content-Type: application/json` and no body is a start
  // with defaults (fetch sends exactly that), not a 400; any other body goes to Fastify's parser.
  const jsonParser = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, null)
    else jsonParser(request, body as string, done)
  })
  addSharedSchemas(app)
  // One message per bad request (`body/interval_seconds must be an integer from 1 to 3600`), not Ajv's list.
  app.setSchemaErrorFormatter(validationErrorFormatter(context.options))
  // Failures the plugin logs itself are answered here, so that Fastify's 5xx logging does not log
  // them again: what the lifecycle or the authorizeAgent check already logged (with the agent and
  // task), and adapter failures (502/504) of a one-off call, logged here with the request, saying
  // the cause once. Every other error goes on to the host's error handler.
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (wasReported(err)) {
      reply.code(err.statusCode ?? 500).send(errorBody(err))
      return
    }
    if (!isAdapterFailure(err)) throw err
    request.log.error(failureLogFields(err), 'Adapter call failed')
    reply.code(err.statusCode).send(errorBody(err))
  })
  if (context.lifecycle.coordinated) {
    // Cluster mode: while Redis is out of reach nothing here can answer truthfully.
    app.addHook('onRequest', (_request, reply, done) => {
      try {
        context.lifecycle.assertAvailable()
        done()
      } catch (err) {
        reply.header('retry-after', retryAfterSeconds(context))
        done(err as Error)
      }
    })
  }
  const connections = new SseConnections(app, context)
  const { hub } = connections
  registerStreamRoute(app, context, connections)
  registerFleetRoute(app, context, connections)
  registerControlRoutes(app, context)
  connectionsHandle.closeAll = () => connections.closeAll()
  connectionsHandle.list = () => {
    const now = Date.now()
    return [...hub.all()].map((client) => ({
      id: client.id,
      agentIds: client.rooms.slice(),
      bufferedBytes: client.bufferedBytes,
      blocked: client.blockedSince !== 0,
      blockedForMs: client.blockedSince === 0 ? 0 : now - client.blockedSince
    }))
  }
}
