import type { MetricsSample } from '../adapter.js'
import type { GapInfo, SubscribeOptions, Subscription } from '../lifecycle/types.js'
import type { SseFrame } from '../sse/frame.js'
import type { SseClient } from '../sse/hub.js'
import type { StreamConnection } from './connections.js'
import { statusSlot, type FleetFrames } from './sse-frames.js'

/** A frame written while the connection joins, with where it goes in id order. */
interface Pending {
  order: number
  frame: SseFrame
}

/**
 * One fleet SSE connection: one lifecycle subscriber per agent it watches, all writing to
 * one response. While it joins, what the agents' histories send (replays, gaps, latest samples)
 * is gathered and written in event id order, so ids increase on the connection whatever agent
 * they belong to; after that, live samples arrive in id order by themselves.
 */
export class FleetConnection implements StreamConnection {
  /** Agents still on this connection, with their subscriptions (null while subscribing). */
  private readonly live = new Map<string, Subscription | null>()
  /** The status JSON last sent per agent. */
  private readonly statusSent = new Map<string, string>()
  private pending: Pending[] | null = []
  /** A gap waits for the sample it precedes (its agent's newest), to take its place in the order. */
  private readonly pendingGaps = new Map<string, SseFrame>()

  constructor (
    private readonly client: SseClient,
    private readonly frames: FleetFrames,
    private readonly onAgentOver: (agentId: string) => void
  ) {}

  get agentIds (): IterableIterator<string> {
    return this.live.keys()
  }

  /** Subscribes the connection to one agent through `subscribe`; a refusal (lifecycle closed) ends that agent here. */
  add (agentId: string, intervalSeconds: number, lastEventId: number | null, subscribe: (options: SubscribeOptions) => Subscription): void {
    this.live.set(agentId, null)
    try {
      const subscription = subscribe(new FleetSubscriber(this, agentId, intervalSeconds, lastEventId))
      if (this.live.has(agentId)) this.live.set(agentId, subscription)
    } catch (err) {
      this.over(agentId, this.frames.errorFrame(agentId, err as Error))
    }
  }

  /** Every agent is subscribed: what their histories sent goes out, in id order. */
  joined (): void {
    const pending = this.pending!
    this.pending = null
    pending.sort((a, b) => a.order - b.order)
    for (const { frame } of pending) this.client.write(frame)
    if (this.live.size === 0) this.client.close()
  }

  /** The agent's status, sent if it differs from the last one this connection got. */
  status (agentId: string, statusJson: string, frame: SseFrame): void {
    if (!this.live.has(agentId) || this.statusSent.get(agentId) === statusJson) return
    this.statusSent.set(agentId, statusJson)
    this.client.offer(frame, statusSlot(agentId))
  }

  leave (): void {
    const subscriptions = [...this.live.values()]
    this.live.clear()
    for (const subscription of subscriptions) subscription?.unsubscribe()
  }

  farewell (): SseFrame | null {
    // Each agent still here hears the shutdown through its subscription first; nothing is left to say.
    return null
  }

  /** @internal */
  sample (agentId: string, json: string, eventId: number): void {
    const frame = this.frames.metricsFrame(agentId, json, eventId)
    if (this.pending === null) {
      this.client.offer(frame, agentId)
      return
    }
    const gap = this.pendingGaps.get(agentId)
    if (gap !== undefined) {
      this.pendingGaps.delete(agentId)
      this.pending.push({ order: eventId - 0.5, frame: gap })
    }
    this.pending.push({ order: eventId, frame })
  }

  /** @internal */
  gap (agentId: string, gap: GapInfo): void {
    const frame = this.frames.gapFrame(agentId, gap)
    if (this.pending === null) this.client.write(frame)
    else this.pendingGaps.set(agentId, frame)
  }

  /** @internal */
  ended (agentId: string, reason: string): void {
    this.over(agentId, this.frames.endFrame(agentId, reason))
  }

  /** @internal */
  failed (agentId: string, err: Error): void {
    this.over(agentId, this.frames.errorFrame(agentId, err))
  }

  /** The agent ended or failed: it is over on this connection; the others go on, and the last one closes it. */
  private over (agentId: string, frame: SseFrame): void {
    if (!this.live.delete(agentId)) return
    this.statusSent.delete(agentId)
    this.onAgentOver(agentId)
    if (this.pending !== null) {
      // Told after everything its history sent.
      this.pending.push({ order: Infinity, frame })
      return
    }
    this.client.write(frame)
    if (this.live.size === 0) this.client.close()
  }
}

/**
 * One agent of a fleet connection as a lifecycle subscriber. A class rather than an object of
 * closures: a fleet of 100 connections × 100 agents has 10,000 of them.
 */
class FleetSubscriber implements SubscribeOptions {
  constructor (
    private readonly connection: FleetConnection,
    private readonly agentId: string,
    readonly intervalSeconds: number,
    readonly lastEventId: number | null
  ) {}

  onSample (_sample: MetricsSample, eventId: number, json: string): void {
    this.connection.sample(this.agentId, json, eventId)
  }

  onGap (gap: GapInfo): void {
    this.connection.gap(this.agentId, gap)
  }

  onEnd (reason: string): void {
    this.connection.ended(this.agentId, reason)
  }

  onError (err: Error): void {
    this.connection.failed(this.agentId, err)
  }
}
