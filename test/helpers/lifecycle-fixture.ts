import { StreamLifecycle, type LifecycleLogger, type MetricsSample } from '../../lib/index.js'
import { ManualTimers } from './manual-timers.js'
import { TestAdapter } from './test-adapter.js'

export interface LogLine {
  level: 'info' | 'warn' | 'error'
  msg: string
  fields: object
}

export class RecordingLogger implements LifecycleLogger {
  readonly lines: LogLine[] = []
  info (fields: object, msg: string): void { this.lines.push({ level: 'info', msg, fields }) }
  warn (fields: object, msg: string): void { this.lines.push({ level: 'warn', msg, fields }) }
  error (fields: object, msg: string): void { this.lines.push({ level: 'error', msg, fields }) }
  messages (): string[] { return this.lines.map((line) => line.msg) }
}

/** A StreamLifecycle on manual timers and a TestAdapter, plus a recorder of what one subscriber saw. */
export function lifecycleFixture (options: { stopDelayMs?: number, adapterTimeoutMs?: number, autoAnswer?: boolean, settle?: () => Promise<void> } = {}) {
  const timers = new ManualTimers(options.settle)
  const adapter = new TestAdapter({ autoAnswer: options.autoAnswer ?? true })
  const logger = new RecordingLogger()
  const lifecycle = new StreamLifecycle({
    adapter,
    stopDelayMs: options.stopDelayMs ?? 2000,
    adapterTimeoutMs: options.adapterTimeoutMs ?? 10000,
    timers,
    logger,
    now: () => 1_700_000_000_000 + timers.now
  })
  return { timers, adapter, logger, lifecycle }
}

export interface Received {
  samples: Array<{ sample: MetricsSample, eventId: number }>
  ends: string[]
  errors: Error[]
}

export function recorder (intervalSeconds = 5) {
  const received: Received = { samples: [], ends: [], errors: [] }
  return {
    received,
    options: {
      intervalSeconds,
      onSample (sample: MetricsSample, eventId: number) { received.samples.push({ sample, eventId }) },
      onEnd (reason: string) { received.ends.push(reason) },
      onError (err: Error) { received.errors.push(err) }
    }
  }
}
