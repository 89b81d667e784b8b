import type { MetricsSample } from '../adapter.js'

/**
 * The per-agent states:
 * - `idle`: no agent stream, nobody subscribed.
 * - `starting`: `startMetricsStreaming` is in flight.
 * - `active`: the agent streams and someone is subscribed (or holds it).
 * - `lingering`: nobody is subscribed; the stop waits `stopDelayMs` in case someone comes back.
 * - `stopping`: `stopMetricsStreaming` is in flight.
 */
export type StreamState = 'idle' | 'starting' | 'active' | 'lingering' | 'stopping'

/**
 * What `status()` reports. The HTTP routes send it as snake_case JSON (`GET /agents/:agentId/status`:
 * `streamingActive` is `streaming_active`, `subscribers` is `sse_clients`, …), mapped at the edge.
 */
export interface StreamStatus {
  agentId: string
  /** `state !== 'idle'`: the agent has (or is getting, or is dropping) a metrics stream. */
  streamingActive: boolean
  state: StreamState
  /** Subscribers counted for this agent (over HTTP, one per SSE client). */
  subscribers: number
  /** A manual start is holding the stream open. */
  manualHold: boolean
  taskId: string | null
  /** The interval the agent stream runs at: the smallest requested when it was (re)tuned. */
  intervalSeconds: number | null
  /** ISO 8601 time the current task became active. */
  startedAt: string | null
  /** Every subscriber's interval and the hold's, ascending. */
  requestedIntervals: number[]
  /** With a coordinator (cluster mode) only: the instance that streams the agent (null when idle). */
  owner?: string | null
}

/** One accepted sample, as the agent's history keeps it and subscribers are offered it. */
export interface HistoryEntry {
  readonly eventId: number
  readonly sample: MetricsSample
  /** The sample's JSON text as it was accepted (what clients are sent). */
  readonly json: string
  /** When the sample arrived (the lifecycle's clock), for the latest-sample-on-subscribe rule. */
  readonly receivedAt: number
}

/**
 * A subscriber as the lifecycle hands it to a coordinator (`CoordinatedStreams.subscribe`): the coordinator decides
 * which samples it is offered and when it ends; the subscriber down-samples on its own and calls back whoever
 * subscribed. A coordinator only calls these.
 */
export interface CoordinatedSubscriber {
  /** The interval it asks for (the stream runs at the smallest interval of its subscribers). */
  readonly intervalSeconds: number
  /** The last event id it saw, on a reconnect: catch it up from there (see {@link SubscribeOptions.lastEventId}). */
  readonly lastEventId: number | null | undefined
  /** The stream now runs at `streamIntervalSeconds`: it gets every k-th sample, k = max(1, round(its interval / that)). */
  tune (streamIntervalSeconds: number): void
  /** A live sample: delivered or skipped by the down-sampling (never one it was already sent). */
  offer (entry: HistoryEntry): void
  /** A sample of its catch-up on joining (the replay, or the latest sample): outside the down-sampling. */
  send (entry: HistoryEntry): void
  /** The latest sample was sent on joining: it counts as the first, the next comes k samples later. */
  countAsFirst (): void
  /** Part of what happened since its `lastEventId` is no longer held (its catch-up is the newest sample only). */
  gap (info: GapInfo): void
  /** The stream ended for good; the subscription is gone. */
  end (reason: string): void
  /** The stream could not start or failed; the subscription is gone. */
  fail (err: Error): void
}

/** Sent instead of a replay when a reconnecting client's `lastEventId` is older than the replay buffer. */
export interface GapInfo {
  /** Samples after `lastEventId` that the client will not get (the newest one is sent after the gap). */
  missed: number
  lastEventId: number
}

export interface SubscribeOptions {
  /**
   * The interval this subscriber asks for. The stream runs at the smallest interval requested;
   * this subscriber gets every k-th sample, k = max(1, round(intervalSeconds / stream interval)).
   */
  intervalSeconds: number
  /**
   * The last event id this subscriber saw (a reconnect): it first gets every held sample after it,
   * or `onGap` and the newest sample if they are no longer held. Ids above any issued are ignored.
   */
  lastEventId?: number | null
  /**
   * A sample, with its event id (strictly increasing per agent, never reused) and its JSON text
   * as it was accepted (an adapter may mutate `sample` afterwards; `json` is the snapshot).
   */
  onSample (sample: MetricsSample, eventId: number, json: string): void
  /** Part of what happened since `lastEventId` is no longer held. */
  onGap? (info: GapInfo): void
  /** The stream ended for good (`cancelled`, `server-shutdown`, or the adapter's reason). The subscription is gone. */
  onEnd? (reason: string): void
  /** The stream could not start or failed. The subscription is gone; subscribing again retries. */
  onError? (err: Error): void
}

export interface Subscription {
  readonly agentId: string
  /** Idempotent. The last one out opens the `stopDelayMs` window. */
  unsubscribe (): void
}

export interface HoldOptions {
  intervalSeconds: number
}

/** pino-compatible subset; Fastify's `app.log` fits. */
export interface LifecycleLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

/** Timer functions, injectable so that tests control time. */
export interface LifecycleTimers {
  setTimeout (callback: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}
