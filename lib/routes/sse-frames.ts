import { STATUS_CODES } from 'node:http'
import type { MetricsSample } from '../adapter.js'
import type { AgentSseErrorBody } from '../errors.js'
import { encodeEvent } from '../sse/frame.js'

/**
 * The plugin's SSE events: `metrics` (with `id:`), `end` and `error`.
 * `metricsFrame` remembers the last frame it built: the lifecycle hands the same
 * sample object to every subscriber of an agent in one pass, so the sample is
 * serialised once per fan-out, not once per client.
 */
export class SseFrames {
  private lastSample: MetricsSample | null = null
  private lastEventId = -1
  private lastFrame: Buffer = Buffer.alloc(0)

  metricsFrame (sample: MetricsSample, eventId: number): Buffer {
    if (sample !== this.lastSample || eventId !== this.lastEventId) {
      this.lastFrame = encodeEvent('metrics', JSON.stringify(sample), eventId)
      this.lastSample = sample
      this.lastEventId = eventId
    }
    return this.lastFrame
  }

  endFrame (reason: string): Buffer {
    return encodeEvent('end', JSON.stringify({ reason }))
  }

  errorFrame (err: Error & { statusCode?: number, code?: string }): Buffer {
    return encodeEvent('error', JSON.stringify(errorBody(err)))
  }
}

export function errorBody (err: Error & { statusCode?: number, code?: string }): AgentSseErrorBody {
  const statusCode = typeof err.statusCode === 'number' ? err.statusCode : 500
  return {
    statusCode,
    code: err.code ?? 'FST_ERR_AGENT_SSE_INTERNAL',
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: err.message
  }
}
