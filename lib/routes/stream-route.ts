import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { ResolvedOptions } from '../options.js'
import { parseLastEventId } from '../sse/frame.js'
import { agentGuard, requestedInterval, type RouteContext } from './context.js'
import { AgentParams, errorResponses, eventStreamResponse, operation, streamQuery } from './schemas.js'
import { ClientSubscriber } from './client-subscriber.js'
import type { SseConnections } from './connections.js'
import { SseFrames } from './sse-frames.js'

/** The stream's events, for the OpenAPI document (README "The SSE stream" says the same). */
function streamDescription ({ stopDelayMs, retryMs, heartbeatIntervalMs }: ResolvedOptions): string {
  return `The agent's metrics as Server-Sent Events. One connection is one subscriber of the agent: the first starts \
the agent's metrics stream, the last one leaving stops it ${stopDelayMs} ms later. The response opens at once with \
\`retry:\` (about ${retryMs} ms)${heartbeatIntervalMs > 0 ? `, sends a \`: ping\` comment every ${heartbeatIntervalMs} ms` : ''} and these events:

| event | \`id:\` | \`data:\` | after it |
|---|---|---|---|
| \`metrics\` | decimal integer from one sequence shared by every agent of the server: strictly increasing per agent and per connection, never reused | the sample as JSON | — |
| \`gap\` | — | \`{"missed": M, "last_event_id": L}\`: a resuming client missed M samples that are no longer held | the newest sample follows |
| \`end\` | — | \`{"reason": "cancelled" \\| "server-shutdown" \\| <the agent's reason, e.g. "agent-offline">}\` | the response ends; do not reconnect |
| \`error\` | — | \`{"statusCode", "code", "error", "message"}\` (\`AgentSseError\`: 502 the agent failed, 504 it did not answer) | the response ends; reconnecting retries the start |

A reconnecting client sends \`Last-Event-ID\` and gets the held samples after it, in order, or \`gap\` and the newest sample.`
}

/** `GET /agents/:agentId/metrics/stream`: one SSE client = one lifecycle subscriber. */
export function registerStreamRoute (app: FastifyInstance, context: RouteContext, connections: SseConnections): void {
  const { lifecycle, options } = context
  const frames = new SseFrames()
  const shutdownFrame = frames.endFrame('server-shutdown')

  app.withTypeProvider<TypeBoxTypeProvider>().get('/agents/:agentId/metrics/stream', {
    // A HEAD has no body to stream: without this Fastify would run the handler and start the agent.
    exposeHeadRoute: false,
    schema: {
      ...operation({ operationId: 'streamAgentMetrics', summary: "Stream an agent's metrics (SSE)", description: streamDescription(options) }),
      params: AgentParams,
      querystring: streamQuery(options.minIntervalSeconds, options.maxIntervalSeconds),
      response: { 200: eventStreamResponse('An SSE stream of the events above'), ...errorResponses }
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
