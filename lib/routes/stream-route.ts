import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { parseLastEventId } from '../sse/frame.js'
import { agentGuard, requestedInterval, type RouteContext } from './context.js'
import { AgentParams, ErrorSchema, streamQuery } from './schemas.js'
import { ClientSubscriber } from './client-subscriber.js'
import type { SseConnections } from './connections.js'
import { SseFrames } from './sse-frames.js'

/** `GET /agents/:agentId/metrics/stream`: one SSE client = one lifecycle subscriber. */
export function registerStreamRoute (app: FastifyInstance, context: RouteContext, connections: SseConnections): void {
  const { lifecycle, options } = context
  const frames = new SseFrames()
  const shutdownFrame = frames.endFrame('server-shutdown')

  app.withTypeProvider<TypeBoxTypeProvider>().get('/agents/:agentId/metrics/stream', {
    // A HEAD has no body to stream: without this Fastify would run the handler and start the agent.
    exposeHeadRoute: false,
    schema: {
      params: AgentParams,
      querystring: streamQuery(options.minIntervalSeconds, options.maxIntervalSeconds),
      response: { '4xx': ErrorSchema, '5xx': ErrorSchema }
    },
    preHandler: agentGuard(context)
    // Synchronous on purpose: connection setup is a hot path, and nothing here awaits.
  }, function openStream (request, reply) {
    const { agentId } = request.params
    const intervalSeconds = requestedInterval(context, request.query.interval_seconds)
    // Limits are checked before the stream opens, so a refused client changes nothing.
    connections.assertRoom(reply, [agentId])
    // A malformed Last-Event-ID is treated as absent, never as an error.
    const lastEventId = parseLastEventId(request.headers['last-event-id'])
    const client = connections.open(request, reply, [agentId], { intervalSeconds, lastEventId })
    if (client === null) return
    const subscriber = new ClientSubscriber(client, frames, agentId, intervalSeconds, lastEventId)
    try {
      const subscription = lifecycle.subscribe(agentId, subscriber)
      connections.track(client, { leave: () => subscription.unsubscribe(), farewell: () => shutdownFrame })
    } catch (err) {
      // Only when the lifecycle is already closed: the client gets the reason instead of a hung stream.
      subscriber.onError(err as Error)
    }
    subscriber.joining = false
  })
}
