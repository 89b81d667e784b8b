import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Subscription } from '../lifecycle/types.js'
import { parseLastEventId } from '../sse/frame.js'
import { SseHub, type SseClient } from '../sse/hub.js'
import { agentMustExist, type RouteContext } from './context.js'
import { AgentParams, ErrorSchema, streamQuery } from './schemas.js'
import { SseFrames } from './sse-frames.js'

/** `GET /agents/:agentId/metrics/stream`: one SSE client = one lifecycle subscriber. */
export function registerStreamRoute (app: FastifyInstance, { lifecycle, options }: RouteContext): void {
  const frames = new SseFrames()
  const subscriptions = new Map<SseClient, Subscription>()
  const hub = new SseHub({
    retryMs: options.retryMs,
    onDisconnect (client) {
      app.log.info({ clientId: client.id, agentIds: [...client.rooms] }, `SSE client disconnected: ${client.id}`)
      subscriptions.get(client)?.unsubscribe()
      subscriptions.delete(client)
    }
  })

  // preClose, not onClose: the server does not finish closing while SSE responses are open.
  app.addHook('preClose', async () => {
    const closing = lifecycle.close()
    hub.closeAll(frames.endFrame('server-shutdown'))
    await closing
  })

  app.withTypeProvider<TypeBoxTypeProvider>().get('/agents/:agentId/metrics/stream', {
    schema: {
      params: AgentParams,
      querystring: streamQuery(options.minIntervalSeconds, options.maxIntervalSeconds),
      response: { '4xx': ErrorSchema, '5xx': ErrorSchema }
    },
    preHandler: agentMustExist(lifecycle)
  }, async (request, reply) => {
    const { agentId } = request.params
    const intervalSeconds = request.query.interval_seconds ?? options.defaultIntervalSeconds
    // A malformed Last-Event-ID is treated as absent, never as an error.
    const lastEventId = parseLastEventId(request.headers['last-event-id'])

    reply.hijack()
    const client = hub.open(String(request.id), request.raw, reply.raw, reply.getHeaders())
    request.log.info({ clientId: client.id, agentId, intervalSeconds, lastEventId }, `SSE client connected: ${client.id}`)
    hub.join(client, agentId)
    try {
      subscriptions.set(client, lifecycle.subscribe(agentId, {
        intervalSeconds,
        lastEventId,
        onSample: (sample, eventId) => client.write(frames.metricsFrame(sample, eventId)),
        onGap: (gap) => client.write(frames.gapFrame(gap)),
        onEnd (reason) {
          client.write(frames.endFrame(reason))
          client.close()
        },
        onError (err) {
          client.write(frames.errorFrame(err))
          client.close()
        }
      }))
    } catch (err) {
      // Only when the lifecycle is already closed: the client gets the reason instead of a hung stream.
      client.write(frames.errorFrame(err as Error))
      client.close()
    }
    return reply
  })
}
