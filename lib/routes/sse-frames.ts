import { errorBody } from '../errors.js'
import type { GapInfo } from '../lifecycle/types.js'
import { encodeEvent, type SseFrame } from '../sse/frame.js'
import { toGapBody } from './schemas.js'

// A slow client keeps only the newest frame of each conflation slot. A single-agent connection uses
// the default slot ''; a fleet connection one slot per agent for its samples (named by the agent id)
// and one for its statuses (a status must not replace a sample).
const STATUS_SLOT_PREFIX = 'status '

/** The conflation slot of an agent's `status` frames on a fleet connection. */
export function statusSlot (agentId: string): string {
  return STATUS_SLOT_PREFIX + agentId
}

/** What a conflation slot holds: the agent (`soleAgent` for the default slot) and the kind of frame. */
export function slotContents (slot: string, soleAgent: string | null): { agentId: string | null, frame: 'metrics' | 'status' } {
  if (slot === '') return { agentId: soleAgent, frame: 'metrics' }
  return slot.startsWith(STATUS_SLOT_PREFIX) ? { agentId: slot.slice(STATUS_SLOT_PREFIX.length), frame: 'status' } : { agentId: slot, frame: 'metrics' }
}

/** Replayed frames kept for a reconnect wave, in bytes (the oldest go first past it). */
const REPLAY_CACHE_BYTES = 8 * 1024 * 1024

/**
 * Metrics frames, each built once per sample and shared by every client it goes to.
 *
 * A frame is a pure function of (agent, the sample's accepted JSON text, event id), so it is
 * cached by exactly those: a frame can only ever carry the sample it was built from, whatever
 * adapter object it came through. The lifecycle hands the same entry to every subscriber of an
 * agent in one pass, so the last frame serves a whole fan-out with three comparisons; replays
 * (a reconnect wave sends the same older samples to many clients) come from a small cache
 * bounded in bytes.
 */
class MetricsFrameCache {
  private lastAgentId: string | null = null
  private lastJson: string | null = null
  private lastEventId = -1
  private lastFrame: SseFrame | null = null
  private readonly replayed = new Map<string, { agentId: string, eventId: number, frame: SseFrame }>()
  private replayedBytes = 0

  constructor (private readonly build: (agentId: string, json: string, eventId: number) => SseFrame) {}

  frame (agentId: string, json: string, eventId: number): SseFrame {
    if (eventId === this.lastEventId && json === this.lastJson && agentId === this.lastAgentId) return this.lastFrame!
    const kept = this.replayed.get(json)
    let frame: SseFrame
    if (kept !== undefined && kept.eventId === eventId && kept.agentId === agentId) {
      frame = kept.frame
    } else {
      frame = this.build(agentId, json, eventId)
      this.remember(agentId, json, eventId, frame)
    }
    this.lastAgentId = agentId
    this.lastJson = json
    this.lastEventId = eventId
    this.lastFrame = frame
    return frame
  }

  private remember (agentId: string, json: string, eventId: number, frame: SseFrame): void {
    const replaced = this.replayed.get(json)
    if (replaced !== undefined) {
      this.replayedBytes -= replaced.frame.bytes.length
      this.replayed.delete(json)
    }
    this.replayed.set(json, { agentId, eventId, frame })
    this.replayedBytes += frame.bytes.length
    for (const [oldest, { frame: old }] of this.replayed) {
      if (this.replayedBytes <= REPLAY_CACHE_BYTES) break
      this.replayed.delete(oldest)
      this.replayedBytes -= old.bytes.length
    }
  }
}

type ErrorLike = Error & { statusCode?: number, code?: string }

/** The single-agent route's events: `metrics` (with `id:`), `gap`, `end` and `error`. */
export class SseFrames {
  private readonly metrics = new MetricsFrameCache((_agentId, json, eventId) => encodeEvent('metrics', json, eventId))

  metricsFrame (agentId: string, json: string, eventId: number): SseFrame {
    return this.metrics.frame(agentId, json, eventId)
  }

  gapFrame (gap: GapInfo): SseFrame {
    return encodeEvent('gap', JSON.stringify(toGapBody(gap)))
  }

  endFrame (reason: string): SseFrame {
    return encodeEvent('end', JSON.stringify({ reason }))
  }

  errorFrame (err: ErrorLike): SseFrame {
    return encodeEvent('error', JSON.stringify(errorBody(err)))
  }
}

/**
 * The fleet route's events: the same names, each naming its agent, plus `status`. A sample's
 * fleet frame wraps its JSON text without parsing it: `{"agent_id": …, "metrics": <the sample>}`.
 */
export class FleetFrames {
  private readonly metrics = new MetricsFrameCache((agentId, json, eventId) =>
    encodeEvent('metrics', `{"agent_id":${JSON.stringify(agentId)},"metrics":${json}}`, eventId))

  metricsFrame (agentId: string, json: string, eventId: number): SseFrame {
    return this.metrics.frame(agentId, json, eventId)
  }

  gapFrame (agentId: string, gap: GapInfo): SseFrame {
    return encodeEvent('gap', JSON.stringify({ agent_id: agentId, ...toGapBody(gap) }))
  }

  endFrame (agentId: string, reason: string): SseFrame {
    return encodeEvent('end', JSON.stringify({ agent_id: agentId, reason }))
  }

  errorFrame (agentId: string, err: ErrorLike): SseFrame {
    return encodeEvent('error', JSON.stringify({ agent_id: agentId, ...errorBody(err) }))
  }

  /** The agent's status, as its JSON text (the status route's body). No `id:`: it is not a sample. */
  statusFrame (statusJson: string): SseFrame {
    return encodeEvent('status', statusJson)
  }
}
