import type { AgentAdapter, MetricsSample, MetricsSink, StartStreamingOptions } from '../../lib/index.js'

interface Deferred<T> {
  promise: Promise<T>
  resolve (value: T): void
  reject (err: unknown): void
}

export function deferred<T> (): Deferred<T> {
  let settle!: { resolve: (value: T) => void, reject: (err: unknown) => void }
  const promise = new Promise<T>((resolve, reject) => { settle = { resolve, reject } })
  return { promise, resolve: (value) => settle.resolve(value), reject: (err) => settle.reject(err) }
}

export interface StartCall {
  agentId: string
  intervalSeconds: number
  signal: AbortSignal
  sink: MetricsSink
  taskId: string
  answer: Deferred<{ taskId: string }>
}

export interface StopCall {
  agentId: string
  taskId: string
  answer: Deferred<void>
}

/**
 * An AgentAdapter for tests that records every call and lets the test decide when
 * (and whether) the agent answers. `autoAnswer` answers at once; with `false`
 * each call waits for `startCalls[i].answer.resolve(...)`.
 * It also tracks live tasks so tests can assert that no stream leaks.
 */
export class TestAdapter implements AgentAdapter {
  readonly startCalls: StartCall[] = []
  readonly stopCalls: StopCall[] = []
  readonly liveTasks = new Map<string, string>() // taskId → agentId
  maxConcurrentPerAgent = 0
  autoAnswer: boolean
  knownAgents: Set<string> | null
  private taskCounter = 0
  private readonly taskPrefix: string

  /** `taskPrefix` keeps task ids of several adapters (cluster instances) apart. */
  constructor (options: { autoAnswer?: boolean, knownAgents?: string[], taskPrefix?: string } = {}) {
    this.autoAnswer = options.autoAnswer ?? true
    this.knownAgents = options.knownAgents ? new Set(options.knownAgents) : null
    this.taskPrefix = options.taskPrefix ?? ''
  }

  startMetricsStreaming (agentId: string, { intervalSeconds, signal }: StartStreamingOptions, sink: MetricsSink): Promise<{ taskId: string }> {
    const taskId = `${this.taskPrefix}task-${++this.taskCounter}`
    const answer = deferred<{ taskId: string }>()
    const call: StartCall = { agentId, intervalSeconds, signal, sink, taskId, answer }
    this.startCalls.push(call)
    answer.promise.then((started) => {
      this.liveTasks.set(started.taskId, agentId)
      const concurrent = [...this.liveTasks.values()].filter((id) => id === agentId).length
      this.maxConcurrentPerAgent = Math.max(this.maxConcurrentPerAgent, concurrent)
    }, () => {})
    if (this.autoAnswer) answer.resolve({ taskId })
    return answer.promise
  }

  stopMetricsStreaming (agentId: string, taskId: string): Promise<void> {
    const answer = deferred<void>()
    this.stopCalls.push({ agentId, taskId, answer })
    answer.promise.then(() => { this.liveTasks.delete(taskId) }, () => {})
    if (this.autoAnswer) answer.resolve()
    return answer.promise
  }

  /** Gives this adapter an in-place `changeInterval` that records its calls (or fails with `fail`). */
  enableChangeInterval (fail?: Error): Array<{ agentId: string, taskId: string, intervalSeconds: number }> {
    const calls: Array<{ agentId: string, taskId: string, intervalSeconds: number }> = []
    this.changeInterval = async (agentId: string, taskId: string, intervalSeconds: number) => {
      calls.push({ agentId, taskId, intervalSeconds })
      if (fail) throw fail
    }
    return calls
  }

  changeInterval?: (agentId: string, taskId: string, intervalSeconds: number) => Promise<void>

  async getCurrentMetrics (agentId: string): Promise<object> {
    return { agent_id: agentId, cpu_percent: 12.5 }
  }

  agentExists (agentId: string): boolean | Promise<boolean> {
    return this.knownAgents === null || this.knownAgents.has(agentId)
  }

  /** The sink of the newest start call for the agent. */
  sinkOf (agentId: string): MetricsSink {
    const call = this.startCalls.filter((c) => c.agentId === agentId).at(-1)
    if (!call) throw new Error(`no start call for ${agentId}`)
    return call.sink
  }

  /** Pushes a sample to the newest task of the agent. */
  push (agentId: string, sample: MetricsSample): void {
    this.sinkOf(agentId).push(sample)
  }

  /** The agent ended a task by itself: it is no longer live. */
  endTask (agentId: string, reason: string): void {
    const call = this.startCalls.filter((c) => c.agentId === agentId).at(-1)!
    this.liveTasks.delete(call.taskId)
    call.sink.end(reason)
  }

  startsFor (agentId: string): number {
    return this.startCalls.filter((c) => c.agentId === agentId).length
  }

  stopsFor (agentId: string): number {
    return this.stopCalls.filter((c) => c.agentId === agentId).length
  }
}
