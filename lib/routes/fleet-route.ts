import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import {
  FST_ERR_AGENT_SSE_FORBIDDEN,
  FST_ERR_AGENT_SSE_INVALID_AGENTS,
  FST_ERR_AGENT_SSE_UNKNOWN_AGENT
} from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import { parseLastEventId } from '../sse/frame.js'
import type { SseConnections } from './connections.js'
import { filterAuthorized, mapBounded, requestedInterval, type RouteContext } from './context.js'
import { FleetConnection } from './fleet-connection.js'
import { FleetStatusFeed } from './fleet-status.js'
import { AGENT_ID_PATTERN, errorResponses, eventStreamResponse, fleetQuery, operation } from './schemas.js'
import { FleetFrames } from './sse-frames.js'

const agentIdPattern = new RegExp(AGENT_ID_PATTERN)

/** The fleet stream's events, for the OpenAPI document (README "Fleet streams" says the same). */
function fleetDescription ({ maxAgentsPerStream, stopDelayMs, retryMs, heartbeatIntervalMs }: ResolvedOptions): string {
  return `Many agents' metrics on one Server-Sent Events connection (browsers open at most six HTTP/1.1 connections \
per origin). \`agents\` lists 1 to ${maxAgentsPerStream} distinct agent ids; each is checked (403, 404, 503) before anything \
starts. The connection is one subscriber of each agent: the first starts an agent's metrics stream, the last one leaving \
stops it ${stopDelayMs} ms later. The response opens at once with \`retry:\` (about ${retryMs} ms)\
${heartbeatIntervalMs > 0 ? `, sends a \`: ping\` comment every ${heartbeatIntervalMs} ms` : ''} and these events:

| event | \`id:\` | \`data:\` | after it |
|---|---|---|---|
| \`metrics\` | decimal integer from one sequence shared by every agent of the server: strictly increasing on the connection, never reused | \`{"agent_id": "edge-1", "metrics": <the sample>}\` | — |
| \`status\` | — | the agent's status, as \`GET /agents/{agentId}/status\` answers it (\`AgentSseStreamStatus\`) | sent for each agent when the connection opens, then when it changes, at most once per agent per second |
| \`gap\` | — | \`{"agent_id", "missed", "last_event_id"}\`: a resuming client missed \`missed\` samples of that agent that are no longer held | that agent's newest sample follows |
| \`end\` | — | \`{"agent_id", "reason"}\` (\`"cancelled"\`, \`"server-shutdown"\` or the agent's reason, e.g. \`"agent-offline"\`) | that agent is over on this connection; the others go on |
| \`error\` | — | \`{"agent_id", "statusCode", "code", "error", "message"}\` (502 the agent failed, 504 it did not answer) | that agent is over on this connection, like \`end\` |

When every agent of the connection has ended or failed, the response ends. A reconnecting client sends \`Last-Event-ID\` \
(or \`last_event_id\` in the query, from a new connection) and each agent resumes: the held samples after it in id \
order, or its \`gap\` and its newest sample.`
}

/**
 * `GET /metrics/stream?agents=a,b,…`: many agents on one SSE connection (browsers allow six
 * HTTP/1.1 connections per origin). One connection = one lifecycle subscriber of each agent,
 * under the same rules as a single-agent client; it counts once toward `maxClients` and in each
 * agent's clients.
 */
export function registerFleetRoute (app: FastifyInstance, context: RouteContext, connections: SseConnections): void {
  const { lifecycle, options } = context
  const { hub } = connections
  const frames = new FleetFrames()
  const statuses = new FleetStatusFeed(lifecycle, frames)
  app.addHook('onClose', async () => statuses.close())

  app.withTypeProvider<TypeBoxTypeProvider>().get('/metrics/stream', {
    exposeHeadRoute: false,
    schema: {
      ...operation({ operationId: 'streamFleetMetrics', summary: "Stream many agents' metrics on one connection (SSE)", description: fleetDescription(options) }),
      querystring: fleetQuery(options.minIntervalSeconds, options.maxIntervalSeconds, options.maxAgentsPerStream),
      response: { 200: eventStreamResponse('An SSE stream of the events above'), ...errorResponses }
    }
  }, async function openFleetStream (request, reply) {
    const agentIds = parseAgentList(request.query.agents, options.maxAgentsPerStream)
    const intervalSeconds = requestedInterval(context, request.query.interval_seconds)
    // Everything is checked, for every agent and in the single-agent route's order, before anything starts.
    const allowed = await filterAuthorized(context, request, agentIds)
    if (allowed.length < agentIds.length) {
      throw new FST_ERR_AGENT_SSE_FORBIDDEN(agentIds.find((agentId, index) => allowed[index] !== agentId)!)
    }
    if (lifecycle.checksAgents) {
      const known = await mapBounded(agentIds, (agentId) => lifecycle.agentExists(agentId))
      const unknown = agentIds.findIndex((_agentId, index) => !known[index])
      if (unknown !== -1) throw new FST_ERR_AGENT_SSE_UNKNOWN_AGENT(agentIds[unknown]!)
    }
    // From here on synchronous: the limits hold when the connection opens.
    connections.assertRoom(reply, agentIds)
    const lastEventId = parseLastEventId(request.headers['last-event-id']) ?? parseLastEventId(request.query.last_event_id)
    const client = connections.open(request, reply, agentIds, { intervalSeconds, lastEventId })
    if (client === null) return
    const connection: FleetConnection = new FleetConnection(client, frames, (agentId) => {
      hub.leave(client, agentId)
      statuses.unwatch(agentId, connection)
    })
    connections.track(client, {
      leave () {
        for (const agentId of connection.agentIds) statuses.unwatch(agentId, connection)
        connection.leave()
      },
      farewell: () => connection.farewell()
    })
    for (const agentId of agentIds) {
      connection.add(agentId, intervalSeconds, lastEventId, (subscriber) => lifecycle.subscribe(agentId, subscriber))
    }
    // Statuses first (they carry no id), then what the histories sent, in id order.
    for (const agentId of [...connection.agentIds]) statuses.watch(agentId, connection)
    connection.joined()
  })
}

/** The distinct agent ids of `agents=a,b,…`, in order; a 400 for an empty, invalid or too long list. */
function parseAgentList (list: string, maxAgents: number): string[] {
  const agentIds = [...new Set(list.split(','))]
  const invalid = agentIds.find((agentId) => !agentIdPattern.test(agentId))
  if (invalid !== undefined) {
    throw new FST_ERR_AGENT_SSE_INVALID_AGENTS(invalid === '' ? 'has an empty agent id' : `has an invalid agent id ${JSON.stringify(invalid.slice(0, 140))}`)
  }
  if (agentIds.length > maxAgents) {
    throw new FST_ERR_AGENT_SSE_INVALID_AGENTS(`lists ${agentIds.length} agents; at most ${maxAgents} (maxAgentsPerStream)`)
  }
  return agentIds
}
