import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { channels } from '../diagnostics.js'
import { FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS } from '../errors.js'
import type { SseFrame } from '../sse/frame.js'
import { SseHub, type SseClient } from '../sse/hub.js'
import { refuseForNow, type RouteContext } from './context.js'
import { slotContents } from './sse-frames.js'

/** What an open SSE connection does when it closes, and what it is told when the server shuts down. */
export interface StreamConnection {
  /** The client is gone: unsubscribe from everything. */
  leave (): void
  /** The server is shutting down: the connection's final frame(s), or null if it has none. */
  farewell (): SseFrame | null
}

/**
 * Every open SSE connection of both stream routes, on one hub: `maxClients` counts connections
 * (a fleet connection once), rooms count a connection in each of its agents, and one heartbeat
 * and one stall sweep serve them all.
 */
export class SseConnections {
  readonly hub: SseHub
  private readonly connections = new Map<SseClient, StreamConnection>()
  /** Connections opened on the fleet route (the diagnostics channels tell them apart). */
  private readonly fleetClients = new WeakSet<SseClient>()

  constructor (app: FastifyInstance, private readonly context: RouteContext) {
    const { options } = context
    this.hub = new SseHub({
      retryMs: options.retryMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      maxBufferedBytes: options.maxBufferedBytes,
      stallTimeoutMs: options.stallTimeoutMs,
      flushIntervalMs: options.flushIntervalMs,
      onDisconnect: (client) => {
        context.log.info({ clientId: client.id, agentIds: client.rooms.slice() }, `SSE client disconnected: ${client.id}`)
        if (channels.clientDisconnected.hasSubscribers) {
          channels.clientDisconnected.publish({ clientId: client.id, agentIds: client.rooms.slice(), fleet: this.fleetClients.has(client) })
        }
        this.connections.get(client)?.leave()
        this.connections.delete(client)
      },
      onStall (client, stalledForMs) {
        context.log.info({ clientId: client.id, stalledForMs, bufferedBytes: client.bufferedBytes }, `SSE client ${client.id} has not drained for ${stalledForMs} ms, disconnecting it`)
        if (channels.clientStalled.hasSubscribers) {
          channels.clientStalled.publish({ clientId: client.id, agentIds: client.rooms.slice(), stalledForMs, bufferedBytes: client.bufferedBytes })
        }
      },
      onConflate (client, slot) {
        if (!channels.clientConflated.hasSubscribers) return
        const { agentId, frame } = slotContents(slot, client.rooms[0] ?? null)
        channels.clientConflated.publish({ clientId: client.id, agentId, frame, bufferedBytes: client.bufferedBytes })
      }
    })
  }

  /** The server is shutting down: every connection gets its farewell frame(s) and is ended. */
  closeAll (): void {
    this.hub.closeAll((client) => this.connections.get(client)?.farewell() ?? null)
  }

  /** 503 with Retry-After unless one more connection fits, and one more client of each agent. Synchronous: checked as the stream opens. */
  assertRoom (reply: FastifyReply, agentIds: readonly string[]): void {
    const { maxClients, maxClientsPerAgent } = this.context.options
    if (maxClients > 0 && this.hub.size >= maxClients) {
      refuseForNow(this.context, reply, new FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS('maxClients', maxClients))
    }
    if (maxClientsPerAgent === 0) return
    for (const agentId of agentIds) {
      if (this.hub.roomSize(agentId) >= maxClientsPerAgent) {
        refuseForNow(this.context, reply, new FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS('maxClientsPerAgent', maxClientsPerAgent))
      }
    }
  }

  /**
   * Takes the response over from Fastify, opens the SSE stream in each agent's room and logs it.
   * Null (and nothing opened) if the client has already gone.
   */
  open (request: FastifyRequest, reply: FastifyReply, agentIds: readonly string[], fields: { intervalSeconds: number, lastEventId: number | null }): SseClient | null {
    reply.hijack()
    const client = this.hub.open(String(request.id), request.raw, reply.raw, reply.getHeaders())
    if (client === null) {
      request.log.info({ agentIds }, 'SSE client left before its stream opened')
      return null
    }
    request.log.info({ clientId: client.id, agentIds, ...fields }, `SSE client connected: ${client.id}`)
    for (const agentId of agentIds) this.hub.join(client, agentId)
    // The single-agent route names its agent in the path; the fleet route in the query.
    const fleet = (request.params as { agentId?: string }).agentId === undefined
    if (fleet) this.fleetClients.add(client)
    if (channels.clientConnected.hasSubscribers) {
      const { intervalSeconds, lastEventId } = fields
      channels.clientConnected.publish({ clientId: client.id, agentIds: agentIds.slice(), fleet, intervalSeconds, lastEventId, remoteAddress: request.ip })
    }
    return client
  }

  track (client: SseClient, connection: StreamConnection): void {
    this.connections.set(client, connection)
  }
}
