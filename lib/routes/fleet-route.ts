import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import {
  FST_ERR_AGENT_SSE_FORBIDDEN,
  FST_ERR_AGENT_SSE_INVALID_AGENTS,
  FST_ERR_AGENT_SSE_UNKNOWN_AGENT
} from '../errors.js'
import { parseLastEventId } from '../sse/frame.js'
import type { SseConnections } from './connections.js'
import { filterAuthorized, mapBounded, requestedInterval, type RouteContext } from './context.js'
import { FleetConnection } from './fleet-connection.js'
import { FleetStatusFeed } from './fleet-status.js'
import { AGENT_ID_PATTERN, ErrorSchema, fleetQuery } from './schemas.js'
import { FleetFrames } from './sse-frames.js'

const agentIdPattern = new RegExp(AGENT_ID_PATTERN)

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
      querystring: fleetQuery(options.minIntervalSeconds, options.maxIntervalSeconds, options.maxAgentsPerStream),
      response: { '4xx': ErrorSchema, '5xx': ErrorSchema }
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
