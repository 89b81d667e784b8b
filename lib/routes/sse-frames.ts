import { errorBody } from '../errors.js'
import type { GapInfo } from '../lifecycle/types.js'
import { encodeEvent, type SseFrame } from '../sse/frame.js'

/** Replayed frames kept for a reconnect wave, in bytes (the oldest go first past it). */
const REPLAY_CACHE_BYTES = 8 * 1024 * 1024

/**
 * The plugin's SSE events: `metrics` (with `id:`), `gap`, `end` and `error`.
 *
 * A metrics frame is a pure function of the sample's accepted JSON text and its event id,
 * so it is cached by exactly those: a frame can only ever carry the sample it was built
 * from, whatever agent or adapter object it came through. The lifecycle hands the same
 * entry to every subscriber of an agent in one pass, so the last frame serves a whole
 * fan-out with two comparisons; replays (a reconnect wave sends the same older samples
 * to many clients) come from a small cache bounded in bytes.
 */
export class SseFrames {
  private lastJson: string | null = null
  private lastEventId = -1
  private lastFrame: SseFrame | null = null
  private readonly replayed = new Map<string, { eventId: number, frame: SseFrame }>()
  private replayedBytes = 0

  metricsFrame (json: string, eventId: number): SseFrame {
    if (eventId === this.lastEventId && json === this.lastJson) return this.lastFrame!
    const kept = this.replayed.get(json)
    let frame: SseFrame
    if (kept !== undefined && kept.eventId === eventId) {
      frame = kept.frame
    } else {
      frame = encodeEvent('metrics', json, eventId)
      this.remember(json, eventId, frame)
    }
    this.lastJson = json
    this.lastEventId = eventId
    this.lastFrame = frame
    return frame
  }

  private remember (json: string, eventId: number, frame: SseFrame): void {
    const replaced = this.replayed.get(json)
    if (replaced !== undefined) {
      this.replayedBytes -= replaced.frame.bytes.length
      this.replayed.delete(json)
    }
    this.replayed.set(json, { eventId, frame })
    this.replayedBytes += frame.bytes.length
    for (const [oldest, { frame: old }] of this.replayed) {
      if (this.replayedBytes <= REPLAY_CACHE_BYTES) break
      this.replayed.delete(oldest)
      this.replayedBytes -= old.bytes.length
    }
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
