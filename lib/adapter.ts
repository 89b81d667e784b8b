/**
 * The only contract between the plugin and the host's agent transport.
 * The plugin never knows how agents are reached; it calls these methods and
 * receives samples through the {@link MetricsSink} it hands to `startMetricsStreaming`.
 */

/** A metrics sample: any JSON-serialisable object. */
export type MetricsSample = Record<string, unknown>

/**
 * Where the adapter delivers what the agent sends for one streaming task.
 * Calls after the task was stopped (or after `end`/`error`) are ignored, so an
 * adapter need not guard against late messages.
 */
export interface MetricsSink {
  /** One sample from the agent. */
  push (sample: MetricsSample): void
  /** The agent ended the task on its own (for example it went offline). The plugin will not call `stopMetricsStreaming` for it. */
  end (reason: string): void
  /** The transport failed; the plugin tells clients and stops the task. */
  error (err: unknown): void
}

export interface StartStreamingOptions {
  /** Seconds between samples, within the plugin's `minIntervalSeconds`..`maxIntervalSeconds`. */
  intervalSeconds: number
  /**
   * Aborts when the plugin no longer wants this task: stopped, timed out, ended by the agent (`sink.end`),
   * server closing. Listeners the adapter added for the task can go with it.
   */
  signal: AbortSignal
}

export interface AgentAdapter {
  /** Ask the agent to start streaming; resolve once it has acknowledged with the task id. */
  startMetricsStreaming (agentId: string, options: StartStreamingOptions, sink: MetricsSink): Promise<{ taskId: string }>
  /** Ask the agent to stop the given task. */
  stopMetricsStreaming (agentId: string, taskId: string): Promise<void>
  /** One-off read of the agent's current metrics. */
  getCurrentMetrics (agentId: string): Promise<object>
  /** Optional: when present, unknown agents get 404 instead of a start attempt. */
  agentExists? (agentId: string): boolean | Promise<boolean>
  /**
   * Optional: change a running task's interval in place. Without it (or when it fails)
   * the plugin re-tunes a stream by stopping it and starting it again.
   */
  changeInterval? (agentId: string, taskId: string, intervalSeconds: number): Promise<void>
  /**
   * Optional: every task the agents are running now. When the server is ready the plugin
   * stops those it does not own (left by a previous process of this server).
   */
  listStreamingTasks? (): Promise<Array<{ agentId: string, taskId: string }>>
}

const requiredMethods = ['startMetricsStreaming', 'stopMetricsStreaming', 'getCurrentMetrics'] as const
const optionalMethods = ['agentExists', 'changeInterval', 'listStreamingTasks'] as const

/**
 * Checks that `value` implements {@link AgentAdapter}; returns the name of the
 * first missing piece (as `adapter.method`) or null. Kept beside the interface
 * so both the plugin's option check and standalone StreamLifecycle use it.
 */
export function findAdapterProblem (value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'adapter'
  const candidate = value as Record<string, unknown>
  for (const method of requiredMethods) {
    if (typeof candidate[method] !== 'function') return `adapter.${method}`
  }
  for (const method of optionalMethods) {
    if (candidate[method] !== undefined && typeof candidate[method] !== 'function') return `adapter.${method}`
  }
  return null
}
