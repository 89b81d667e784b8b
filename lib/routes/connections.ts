import type { FastifyInstance } from 'fastify'
import type { SseFrame } from '../sse/frame.js'
import { SseHub, type SseClient } from '../sse/hub.js'
import type { RouteContext } from './context.js'

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

  constructor (app: FastifyInstance, { lifecycle, options }: RouteContext) {
    this.hub = new SseHub({
      retryMs: options.retryMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      maxBufferedBytes: options.maxBufferedBytes,
      stallTimeoutMs: options.stallTimeoutMs,
      onDisconnect: (client) => {
        app.log.info({ clientId: client.id, agentIds: client.rooms.slice() }, `SSE client disconnected: ${client.id}`)
        this.connections.get(client)?.leave()
        this.connections.delete(client)
      },
      onStall (client, stalledForMs) {
        app.log.info({ clientId: client.id, stalledForMs, bufferedBytes: client.bufferedBytes }, `SSE client ${client.id} has not drained for ${stalledForMs} ms, disconnecting it`)
      }
    })
    // preClose, not onClose: the server does not finish closing while SSE responses are open.
    app.addHook('preClose', async () => {
      const closing = lifecycle.close()
      this.hub.closeAll((client) => this.connections.get(client)?.farewell() ?? null)
      await closing
    })
  }

  track (client: SseClient, connection: StreamConnection): void {
    this.connections.set(client, connection)
  }
}
