import { AgentStream, type AgentStreamContext } from './agent-stream.js'
import type { Coordinator, CoordinatedStreams, CoordinatorContext } from './coordinator.js'
import { ReplayHistory } from './replay-history.js'
import type { Subscriber } from './subscriber.js'
import { idleStatus, type StreamStatus } from './types.js'

/** The default coordinator: reference counts in this process, no dependencies. */
export function localCoordinator (): Coordinator {
  return { attach: (context) => new LocalStreams(context) }
}

/** One {@link AgentStream} per agent that has demand, in this process. */
export class LocalStreams implements CoordinatedStreams {
  private readonly streams = new Map<string, AgentStream>()
  // Kept apart from `streams` (which forget idle agents) so that ids keep increasing
  // across stop/start and replay survives a restart of the agent's stream.
  private readonly histories = new Map<string, ReplayHistory>()
  private readonly streamContext: AgentStreamContext
  private closing: Promise<void> | null = null

  constructor (private readonly context: CoordinatorContext) {
    this.streamContext = {
      ...context,
      isClosing: () => this.closing !== null,
      onIdle: (stream) => {
        if (this.streams.get(stream.agentId) === stream) this.streams.delete(stream.agentId)
        // An agent that never produced a sample leaves nothing behind (ids that never existed cannot pile up).
        if (this.histories.get(stream.agentId)?.lastEventId === 0) this.histories.delete(stream.agentId)
      }
    }
  }

  ready (): Promise<void> {
    return Promise.resolve()
  }

  assertAvailable (): void {}

  subscribe (agentId: string, subscriber: Subscriber): () => void {
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

  async cancelTask (taskId: string): Promise<StreamStatus | false> {
    for (const stream of this.streams.values()) {
      if (stream.taskId !== taskId) continue
      const stopped = stream.cancel()
      if (stopped === null) return false
      await stopped
      return this.status(stream.agentId)
    }
    return false
  }

  agentOfTask (taskId: string): string | null {
    for (const stream of this.streams.values()) if (stream.taskId === taskId) return stream.agentId
    return null
  }

  mayOwn (agentId: string, taskId: string): boolean {
    const stream = this.streams.get(agentId)
    return stream !== undefined && (stream.state === 'starting' || stream.taskId === taskId)
  }

  status (agentId: string): StreamStatus {
    return this.streams.get(agentId)?.status() ?? idleStatus(agentId)
  }

  list (): StreamStatus[] {
    const statuses: StreamStatus[] = []
    for (const stream of this.streams.values()) {
      if (stream.state !== 'idle') statuses.push(stream.status())
    }
    return statuses
  }

  lastEventId (agentId: string): number {
    return this.histories.get(agentId)?.lastEventId ?? 0
  }

  close (): Promise<void> {
    if (this.closing) return this.closing
    // Set before any subscriber hears `server-shutdown`, so that one subscribing again from its callback is refused.
    let done: () => void = () => {}
    this.closing = new Promise<void>((resolve) => { done = resolve })
    Promise.all([...this.streams.values()].map((stream) => stream.shutdown())).then(() => done())
    return this.closing
  }

  private streamOf (agentId: string): AgentStream {
    let stream = this.streams.get(agentId)
    if (!stream) {
      let history = this.histories.get(agentId)
      if (!history) {
        history = new ReplayHistory(this.context.replayBufferSize)
        this.histories.set(agentId, history)
      }
      stream = new AgentStream(agentId, this.streamContext, history)
      this.streams.set(agentId, stream)
    }
    return stream
  }
}
