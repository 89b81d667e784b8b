import { AgentStream, type AgentStreamContext } from './agent-stream.js'
import type { Coordinator, CoordinatedStreams, CoordinatorContext } from './coordinator.js'
import { HistoryStore } from './history-store.js'
import { idleStatus } from './stream-status.js'
import { TaskIndex } from './task-index.js'
import type { CoordinatedSubscriber, StreamStatus } from './types.js'

/** The default coordinator: reference counts in this process, no dependencies. */
export function localCoordinator (): Coordinator {
  return { attach: (context) => new LocalStreams(context) }
}

/** One {@link AgentStream} per agent that has demand, in this process. */
export class LocalStreams implements CoordinatedStreams {
  private readonly streams = new Map<string, AgentStream>()
  // Kept apart from `streams` (which forget idle agents at once) so that replay survives a
  // restart of the agent's stream; bounded, see HistoryStore.
  private readonly histories: HistoryStore
  private readonly tasks = new TaskIndex()
  private readonly streamContext: AgentStreamContext
  private lastIssuedEventId = 0
  private closing: Promise<void> | null = null

  constructor (private readonly context: CoordinatorContext) {
    this.histories = new HistoryStore(context.replayBufferSize, context.timers, () => context.now())
    this.streamContext = {
      ...context,
      nextEventId: () => ++this.lastIssuedEventId,
      lastEventId: () => this.lastIssuedEventId,
      isClosing: () => this.closing !== null,
      onStateChanged: (stream) => this.tasks.update(stream),
      onIdle: (stream) => {
        if (this.streams.get(stream.agentId) === stream) this.streams.delete(stream.agentId)
        this.histories.idle(stream.agentId)
      }
    }
  }

  ready (): Promise<void> {
    return Promise.resolve()
  }

  assertAvailable (): void {}

  subscribe (agentId: string, subscriber: CoordinatedSubscriber): () => void {
    const stream = this.streamOf(agentId)
    stream.subscribe(subscriber)
    return () => stream.unsubscribe(subscriber)
  }

  async hold (agentId: string, intervalSeconds: number): Promise<StreamStatus> {
    await this.streamOf(agentId).hold(intervalSeconds)
    return this.status(agentId)
  }

  async release (agentId: string): Promise<StreamStatus> {
    this.streams.get(agentId)?.release()
    return this.status(agentId)
  }

  holdCount (): number {
    let holds = 0
    for (const stream of this.streams.values()) if (stream.held) holds++
    return holds
  }

  async cancelTask (agentId: string, taskId: string): Promise<StreamStatus | false> {
    const stopped = this.streams.get(agentId)?.cancel(taskId) ?? null
    if (stopped === null) return false
    await stopped
    return this.status(agentId)
  }

  agentsOfTask (taskId: string): string[] {
    return this.tasks.streamsOf(taskId).map((stream) => stream.agentId)
  }

  mayOwn (agentId: string, taskId: string): boolean {
    const stream = this.streams.get(agentId)
    return stream !== undefined && (stream.state === 'starting' || stream.taskId === taskId)
  }

  status (agentId: string): StreamStatus {
    return this.streams.get(agentId)?.status() ?? idleStatus(agentId)
  }

  streamingAgents (): string[] {
    const agents: string[] = []
    for (const stream of this.streams.values()) if (stream.state !== 'idle') agents.push(stream.agentId)
    return agents
  }

  lastEventId (agentId: string): number {
    return this.histories.get(agentId)?.lastEventId ?? 0
  }

  close (): Promise<void> {
    if (this.closing) return this.closing
    // Set before any subscriber hears `server-shutdown`, so that one subscribing again from its callback is refused.
    let done: () => void = () => {}
    this.closing = new Promise<void>((resolve) => { done = resolve })
    Promise.all([...this.streams.values()].map((stream) => stream.shutdown())).then(() => {
      this.histories.clear()
      done()
    })
    return this.closing
  }

  private streamOf (agentId: string): AgentStream {
    let stream = this.streams.get(agentId)
    if (!stream) {
      stream = new AgentStream(agentId, this.streamContext, this.histories.use(agentId))
      this.streams.set(agentId, stream)
    }
    return stream
  }
}
