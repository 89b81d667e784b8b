import type { StreamLifecycle } from '../lifecycle/stream-lifecycle.js'
import type { FleetConnection } from './fleet-connection.js'
import { toStatusBody } from './schemas.js'
import type { FleetFrames } from './sse-frames.js'

/** How often watched agents' statuses are compared: at most one `status` event per agent per this period. */
const STATUS_PERIOD_MS = 1000

/**
 * The `status` events of fleet connections. Each agent watched by at least one fleet connection
 * has its status read once per period; when it changed, one frame is built and offered to the
 * connections that have not seen it. So a connect storm (every join changes `sse_clients`) costs
 * one frame per agent per period, not one per join, and the last status sent matches the status
 * once things settle. One timer for the whole server, running only while someone watches.
 */
export class FleetStatusFeed {
  private readonly watchers = new Map<string, Set<FleetConnection>>()
  private readonly lastJson = new Map<string, string>()
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly lifecycle: StreamLifecycle, private readonly frames: FleetFrames) {}

  /** The connection watches the agent: it gets the agent's status now, then its changes. */
  watch (agentId: string, connection: FleetConnection): void {
    let watchers = this.watchers.get(agentId)
    if (!watchers) {
      watchers = new Set()
      this.watchers.set(agentId, watchers)
    }
    watchers.add(connection)
    const json = JSON.stringify(toStatusBody(this.lifecycle.status(agentId)))
    connection.status(agentId, json, this.frames.statusFrame(json))
    this.timer ??= setInterval(() => this.tick(), STATUS_PERIOD_MS).unref()
  }

  unwatch (agentId: string, connection: FleetConnection): void {
    const watchers = this.watchers.get(agentId)
    if (!watchers?.delete(connection) || watchers.size > 0) return
    this.watchers.delete(agentId)
    this.lastJson.delete(agentId)
    if (this.watchers.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  close (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private tick (): void {
    for (const [agentId, watchers] of this.watchers) {
      const json = JSON.stringify(toStatusBody(this.lifecycle.status(agentId)))
      if (json === this.lastJson.get(agentId)) continue
      this.lastJson.set(agentId, json)
      const frame = this.frames.statusFrame(json)
      for (const connection of watchers) connection.status(agentId, json, frame)
    }
  }
}
