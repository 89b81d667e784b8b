import type { MetricsSample } from '../adapter.js'
import { errorBody } from '../errors.js'
import type { GapInfo } from '../lifecycle/types.js'
import { sampleJson } from '../sample-json.js'
import { encodeEvent, type SseFrame } from '../sse/frame.js'

/**
 * The plugin's SSE events: `metrics` (with `id:`), `end` and `error`.
 * `metricsFrame` remembers the last frame it built: the lifecycle hands the same
 * sample object to every subscriber of an agent in one pass, so the sample is
 * serialised once per fan-out, not once per client.
 */
export class SseFrames {
  private lastSample: MetricsSample | null = null
  private lastEventId = -1
  private lastFrame: SseFrame | null = null
  // Replays and latest-sample sends reach back past the last frame; a reconnect wave
  // replays the same samples to many clients, so those frames are kept while the sample lives.
  private readonly olderFrames = new WeakMap<MetricsSample, { eventId: number, frame: SseFrame }>()

  metricsFrame (sample: MetricsSample, eventId: number): SseFrame {
    if (sample === this.lastSample && eventId === this.lastEventId) return this.lastFrame!
    const kept = this.olderFrames.get(sample)
    // The id is checked too: an adapter may push the same object twice.
    const frame = kept?.eventId === eventId ? kept.frame : encodeEvent('metrics', sampleJson(sample), eventId)
    this.olderFrames.set(sample, { eventId, frame })
    this.lastSample = sample
    this.lastEventId = eventId
    this.lastFrame = frame
    return frame
  }

  gapFrame (gap: GapInfo): SseFrame {
    return encodeEvent('gap', JSON.stringify(gap))
  }

  endFrame (reason: string): SseFrame {
    return encodeEvent('end', JSON.stringify({ reason }))
  }

  errorFrame (err: Error & { statusCode?: number, code?: string }): SseFrame {
    return encodeEvent('error', JSON.stringify(errorBody(err)))
  }
}
