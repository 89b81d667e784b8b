import type { MetricsSample } from '../adapter.js'
import type { GapInfo, SubscribeOptions } from '../lifecycle/types.js'
import type { SseClient } from '../sse/hub.js'
import type { SseFrames } from './sse-frames.js'

/**
 * One SSE client as a lifecycle subscriber. A class rather than an object of closures:
 * one small allocation per connection, and the fan-out calls monomorphic methods.
 */
export class ClientSubscriber implements SubscribeOptions {
  /**
   * While subscribing, what the lifecycle sends (a replay, or the latest sample) must all
   * arrive; live samples after that are latest-value and may be conflated for a slow client.
   */
  joining = true

  constructor (
    private readonly client: SseClient,
    private readonly frames: SseFrames,
    private readonly agentId: string,
    readonly intervalSeconds: number,
    readonly lastEventId: number | null
  ) {}

  onSample (_sample: MetricsSample, eventId: number, json: string): void {
    const frame = this.frames.metricsFrame(this.agentId, json, eventId)
    if (this.joining) this.client.write(frame)
    else this.client.offer(frame)
  }

  onGap (gap: GapInfo): void {
    this.client.write(this.frames.gapFrame(gap))
  }

  onEnd (reason: string): void {
    this.client.write(this.frames.endFrame(reason))
    this.client.close()
  }

  onError (err: Error): void {
    this.client.write(this.frames.errorFrame(err))
    this.client.close()
  }
}
