// A custom coordinator, written as a user would: from the package's public types only (README "Without Fastify,
// and custom coordinators"). If `Coordinator` named an unexported type, this file could not be written.
import { expectAssignable, expectType } from 'tsd'
import type {
  AgentSseOptions,
  Coordinator,
  CoordinatedStreams,
  CoordinatedSubscriber,
  CoordinatorContext,
  HistoryEntry,
  MetricsSample,
  StreamStatus
} from 'fastify-agent-sse'
import { StreamLifecycle } from 'fastify-agent-sse'

/** Every agent streams in this process, from its first subscriber until the last one leaves (no grace window). */
class EagerStreams implements CoordinatedStreams {
  private readonly subscribers = new Map<string, Set<CoordinatedSubscriber>>()
  private readonly tasks = new Map<string, string>()
  private eventId = 0

  constructor (private readonly context: CoordinatorContext) {}

  async ready (): Promise<void> {}
  assertAvailable (): void {}

  subscribe (agentId: string, subscriber: CoordinatedSubscriber): () => void {
    let subscribers = this.subscribers.get(agentId)
    if (!subscribers) {
      subscribers = new Set()
      this.subscribers.set(agentId, subscribers)
      this.start(agentId, subscriber.intervalSeconds)
    }
    expectType<number | null | undefined>(subscriber.lastEventId)
    subscriber.tune(subscriber.intervalSeconds)
    subscribers.add(subscriber)
    return () => {
      subscribers.delete(subscriber)
      const taskId = this.tasks.get(agentId)
      if (subscribers.size === 0 && taskId !== undefined) this.context.adapter.stopMetricsStreaming(agentId, taskId)
    }
  }

  async hold (agentId: string): Promise<StreamStatus> { return this.status(agentId) }
  async release (agentId: string): Promise<StreamStatus> { return this.status(agentId) }
  holdCount (): number { return 0 }

  async cancelTask (agentId: string, taskId: string): Promise<StreamStatus | false> {
    if (this.tasks.get(agentId) !== taskId) return false
    for (const subscriber of this.subscribers.get(agentId) ?? []) subscriber.end('cancelled')
    return this.status(agentId)
  }

  status (agentId: string): StreamStatus {
    const subscribers = [...this.subscribers.get(agentId) ?? []]
    const taskId = this.tasks.get(agentId) ?? null
    return {
      agentId,
      streamingActive: taskId !== null,
      state: taskId === null ? 'idle' : 'active',
      subscribers: subscribers.length,
      manualHold: false,
      taskId,
      intervalSeconds: null,
      startedAt: null,
      requestedIntervals: subscribers.map((subscriber) => subscriber.intervalSeconds).sort((a, b) => a - b)
    }
  }

  streamingAgents (): string[] { return [...this.tasks.keys()] }
  lastEventId (): number { return this.eventId }
  agentsOfTask (taskId: string): string[] { return [...this.tasks].filter(([, task]) => task === taskId).map(([agentId]) => agentId) }
  mayOwn (agentId: string, taskId: string): boolean { return this.tasks.get(agentId) === taskId }
  async close (): Promise<void> {
    for (const subscribers of this.subscribers.values()) for (const subscriber of subscribers) subscriber.end('server-shutdown')
  }

  private start (agentId: string, intervalSeconds: number): void {
    const offer = (sample: MetricsSample): void => {
      const entry: HistoryEntry = { eventId: ++this.eventId, sample, json: JSON.stringify(sample), receivedAt: this.context.now() }
      for (const subscriber of this.subscribers.get(agentId) ?? []) subscriber.offer(entry)
    }
    const signal = new AbortController().signal
    this.context.adapter.startMetricsStreaming(agentId, { intervalSeconds, signal }, {
      push: offer,
      end: (reason) => { for (const subscriber of this.subscribers.get(agentId) ?? []) subscriber.end(reason) },
      error: (err) => { for (const subscriber of this.subscribers.get(agentId) ?? []) subscriber.fail(err instanceof Error ? err : new Error(String(err))) }
    }).then(({ taskId }) => this.tasks.set(agentId, taskId))
  }
}

const eager: Coordinator = { attach: (context) => new EagerStreams(context) }
expectAssignable<AgentSseOptions['coordinator']>(eager)

declare const adapter: AgentSseOptions['adapter']
expectType<StreamLifecycle>(new StreamLifecycle({ adapter, coordinator: eager }))
