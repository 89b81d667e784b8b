import type { AgentAdapter } from '../adapter.js'
import type { CoordinatedSubscriber, LifecycleLogger, LifecycleTimers, StreamStatus } from './types.js'

/**
 * The seam between {@link StreamLifecycle} and where the reference counts live.
 * The default keeps them in this process; `fastify-agent-sse/redis` shares them
 * across a cluster. A coordinator is a factory: the lifecycle attaches it once.
 */
export interface Coordinator {
  attach (context: CoordinatorContext): CoordinatedStreams
}

/** What a coordinator gets from the lifecycle it serves (options already validated). */
export interface CoordinatorContext {
  readonly adapter: AgentAdapter
  readonly stopDelayMs: number
  readonly adapterTimeoutMs: number
  readonly replayBufferSize: number
  readonly logger: LifecycleLogger
  readonly timers: LifecycleTimers
  now (): number
}

/**
 * The per-agent streams as one coordinator runs them. The lifecycle validates
 * arguments and refuses calls once closed; everything else is the coordinator's.
 */
export interface CoordinatedStreams {
  /** Resolves once the coordinator can serve (its connections are up). */
  ready (): Promise<void>
  /** Throws (503) while the coordinator cannot serve, so callers fail fast instead of hanging. */
  assertAvailable (): void
  /**
   * Adds a subscriber: the coordinator catches it up (`send`, `gap`), offers it every live sample and tells it the
   * stream's interval (`tune`) and how the stream ended (`end`, `fail`). Returns its idempotent unsubscribe.
   */
  subscribe (agentId: string, subscriber: CoordinatedSubscriber): () => void
  hold (agentId: string, intervalSeconds: number): Promise<StreamStatus>
  release (agentId: string): Promise<StreamStatus>
  /** Manual holds set through this instance (what `maxHolds` bounds). */
  holdCount (): number
  /** Cancels the agent's task if it is live and has this id; false otherwise. */
  cancelTask (agentId: string, taskId: string): Promise<StreamStatus | false>
  status (agentId: string): StreamStatus
  /**
   * Optional: brings this instance's view of these agents (null: of which agents stream) up to date
   * before a status answer; a cluster coordinator reads what it does not follow from Redis. Without
   * it, `status` and `streamingAgents` are always current.
   */
  refresh? (agentIds: readonly string[] | null): Promise<void>
  /** The agents that are not idle, in no particular order. */
  streamingAgents (): string[]
  lastEventId (agentId: string): number
  /** The agents whose live or stopping task has this id (task ids are only unique per agent). */
  agentsOfTask (taskId: string): string[]
  /** True if the task is (or might be, a start being in flight) one this coordinator's streams own. */
  mayOwn (agentId: string, taskId: string): boolean
  /** Ends every subscriber with `server-shutdown` and stops what this process streams. Idempotent. */
  close (): Promise<void>
}
