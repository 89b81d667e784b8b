import type { LifecycleLogger } from '../lifecycle/types.js'
import type { DemandChanged, RedisStore } from './store.js'

/** What the writer needs from the instance. */
export interface DemandWriterHooks {
  /** This instance's demand record for the agent now, '' for none. */
  record (agentId: string): string
  available (): boolean
  closing (): boolean
  /** Redis took the change sent at `sentAt`: its answer (the agent as it is now; a free lease may now be this instance's). */
  written (agentId: string, changed: DemandChanged, sentAt: number): Promise<void>
  now (): number
}

/** Demand changes written together (each with the takeover it may lead to). */
const WRITES_AT_ONCE = 64

/**
 * This instance's demand records in Redis, one per agent it has subscribers or a hold of. Changes within a tick
 * coalesce into one script call per agent that changed (see RedisStore.changeDemand); the renewal writes them all
 * again each period (then `renewed` says what it wrote).
 */
export class DemandWriter {
  /** The record per agent as Redis has it (what a change or a renewal wrote). */
  private readonly inRedis = new Map<string, string>()
  /** Agents whose demand changed since the last write. */
  private readonly dirty = new Set<string>()
  private flushing: Promise<void> | null = null
  private scheduled = false

  constructor (private readonly store: RedisStore, private readonly logger: LifecycleLogger, private readonly hooks: DemandWriterHooks) {}

  /** Agents this instance has a record of in Redis. */
  agents (): string[] {
    return [...this.inRedis.keys()]
  }

  has (agentId: string): boolean {
    return this.inRedis.has(agentId)
  }

  /** The agent's demand changed here: written on the next tick. */
  changed (agentId: string): void {
    this.dirty.add(agentId)
    if (this.hooks.closing() || this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.write().catch(() => {})
    })
  }

  /** A renewal wrote this record ('' removed it). */
  renewed (agentId: string, record: string): void {
    if (record === '') this.inRedis.delete(agentId)
    else this.inRedis.set(agentId, record)
  }

  /** Writes every pending change; resolves once they are in Redis (a hold is answered after its own). */
  async write (): Promise<void> {
    while (this.flushing) await this.flushing
    if (this.dirty.size === 0 || !this.hooks.available()) return
    const agents = [...this.dirty]
    this.dirty.clear()
    this.flushing = this.writeAll(agents).finally(() => { this.flushing = null })
    await this.flushing
  }

  /**
   * A few dozen agents at a time: a thousand clients arriving at once (a fleet console's reconnect) would otherwise
   * queue thousands of commands on the connection ahead of the next renewal, which then lands too late and loses
   * every lease this instance holds.
   */
  private async writeAll (agents: string[]): Promise<void> {
    for (let start = 0; start < agents.length; start += WRITES_AT_ONCE) {
      // Closing: the rest would go out on a connection about to close; removeAll takes this instance out of them all.
      if (this.hooks.closing()) return
      await Promise.all(agents.slice(start, start + WRITES_AT_ONCE).map((agentId) => this.writeOne(agentId)))
    }
  }

  /**
   * Closing: out of every agent's demand at once, instead of when the records' deadlines pass; after the writes
   * already on their way, so that none of them puts a record back.
   */
  async removeAll (): Promise<void> {
    while (this.flushing) await this.flushing
    await Promise.all(this.agents().map((agentId) => this.store.changeDemand(agentId, '')))
  }

  private async writeOne (agentId: string): Promise<void> {
    const record = this.hooks.record(agentId)
    if ((this.inRedis.get(agentId) ?? '') === record) return
    try {
      const sentAt = this.hooks.now()
      const changed = await this.store.changeDemand(agentId, record)
      this.renewed(agentId, record)
      await this.hooks.written(agentId, changed, sentAt)
    } catch (err) {
      // The next renewal writes it.
      this.logger.warn({ agentId, err }, `Could not write the demand for agent ${agentId}: ${(err as Error).message}`)
    }
  }
}
