import { channel, tracingChannel, type TracingChannel } from 'node:diagnostics_channel'

/**
 * Every `node:diagnostics_channel` the plugin publishes on, and what each message holds.
 *
 * Subscribe by name (`diagnostics_channel.subscribe('fastify-agent-sse:stream:started', fn)`), as
 * with undici's and Fastify's channels: an APM or a metrics exporter needs no import of this
 * package, and the plugin depends on none of them. Nothing is built or published while a channel
 * has no subscriber. Messages carry plain data (ids, numbers, reasons, errors), never the
 * adapter, a socket or a request; they are handed to every subscriber as they are: do not change them.
 */
export const diagnosticsChannels = {
  /** An agent acknowledged a start: its task is live. Message: {@link StreamStartedMessage}. */
  streamStarted: 'fastify-agent-sse:stream:started',
  /** A task that was started is over (stopped by the plugin or ended by the agent). Message: {@link StreamStoppedMessage}. */
  streamStopped: 'fastify-agent-sse:stream:stopped',
  /** A start failed, or a live task's transport failed (a `stopped` follows once it is stopped). Message: {@link StreamFailedMessage}. */
  streamFailed: 'fastify-agent-sse:stream:failed',
  /** An SSE connection opened (either stream route). Message: {@link ClientConnectedMessage}. */
  clientConnected: 'fastify-agent-sse:client:connected',
  /** An SSE connection closed, for any reason. Message: {@link ClientDisconnectedMessage}. */
  clientDisconnected: 'fastify-agent-sse:client:disconnected',
  /** A slow client's waiting frame was replaced by a newer one (one message per frame it will never get). Message: {@link ClientConflatedMessage}. */
  clientConflated: 'fastify-agent-sse:client:conflated',
  /** A client that had not drained for `stallTimeoutMs` is being dropped (its `disconnected` follows). Message: {@link ClientStalledMessage}. */
  clientStalled: 'fastify-agent-sse:client:stalled',
  /**
   * The TracingChannel around every adapter call: `tracing:fastify-agent-sse:adapter:start`,
   * `…:end`, `…:asyncStart`, `…:asyncEnd` and `…:error`. Context: {@link AdapterCallContext}.
   */
  adapterCall: 'fastify-agent-sse:adapter'
} as const

/** The adapter methods the plugin calls. */
export type AdapterOperation =
  | 'startMetricsStreaming'
  | 'stopMetricsStreaming'
  | 'changeInterval'
  | 'getCurrentMetrics'
  | 'agentExists'
  | 'listStreamingTasks'

export interface StreamStartedMessage {
  agentId: string
  taskId: string
  intervalSeconds: number
}

/**
 * Why a task is over:
 * - `no-demand`: no subscriber and no hold came back within `stopDelayMs`;
 * - `cancelled`: cancelled (`POST /tasks/:taskId/cancel`, `cancelTask`);
 * - `server-shutdown`: the plugin is closing;
 * - `interval-change`: restarted at a new interval (the adapter has no working `changeInterval`);
 * - `stream-failed`: the adapter reported a transport error (see `stream:failed`);
 * - `ended-by-agent`: the agent ended the task on its own (`sink.end(reason)`); the plugin called no stop.
 */
export type StreamStopReason = 'no-demand' | 'cancelled' | 'server-shutdown' | 'interval-change' | 'stream-failed' | 'ended-by-agent'

export interface StreamStoppedMessage {
  agentId: string
  taskId: string
  reason: StreamStopReason
  /** With `ended-by-agent`: the reason the agent gave (what its clients get in `event: end`); else null. */
  endReason: string | null
  /** The stop call failed or timed out (the plugin treats the task as stopped anyway, no retry); else null. */
  error: Error | null
}

export interface StreamFailedMessage {
  agentId: string
  /** `start`: `startMetricsStreaming` failed or timed out (no task). `stream`: the live task's transport failed. */
  phase: 'start' | 'stream'
  /** The task, when the failure is of a live one. */
  taskId: string | null
  /** A `FST_ERR_AGENT_SSE_ADAPTER_FAILED` (502, the adapter's error as `cause`) or `…_ADAPTER_TIMEOUT` (504). */
  error: Error
}

export interface ClientConnectedMessage {
  /** The SSE request's id (as `app.sseConnections()` and the log lines name the client). */
  clientId: string
  /** The agents it streams: one, or a fleet connection's list. */
  agentIds: readonly string[]
  /** Opened on the fleet route (`GET /metrics/stream?agents=…`). */
  fleet: boolean
  intervalSeconds: number
  /** The `Last-Event-ID` it resumes from, or null. */
  lastEventId: number | null
  /** `request.ip` (with `trustProxy`, the client's address as the proxy reports it). */
  remoteAddress: string
}

export interface ClientDisconnectedMessage {
  clientId: string
  /** The agents it still streamed when it closed (a fleet connection loses agents that ended). */
  agentIds: readonly string[]
  fleet: boolean
}

export interface ClientConflatedMessage {
  clientId: string
  /** The agent whose frame was replaced (null if the connection streams none any more). */
  agentId: string | null
  /** A sample (`metrics`), or a fleet connection's `status` event. */
  frame: 'metrics' | 'status'
  /** Bytes queued for the client in user space. */
  bufferedBytes: number
}

export interface ClientStalledMessage {
  clientId: string
  agentIds: readonly string[]
  /** How long it had not drained. */
  stalledForMs: number
  bufferedBytes: number
}

/**
 * The context object of one adapter call on the `fastify-agent-sse:adapter` TracingChannel. The call
 * traced is the plugin's bounded one: it ends when the adapter settles or `adapterTimeoutMs` passes.
 */
export interface AdapterCallContext {
  operation: AdapterOperation
  /** `'*'` for `listStreamingTasks`, which is not about one agent. */
  agentId: string
  /** Set before `asyncStart` when the call succeeded: what the adapter resolved to. */
  result?: unknown
  /** Set before `error`: a `FST_ERR_AGENT_SSE_ADAPTER_FAILED` (502, the adapter's error as `cause`) or `…_ADAPTER_TIMEOUT` (504). */
  error?: unknown
}

/** A channel whose messages have one shape (`publish` of `node:diagnostics_channel` takes `unknown`). */
export interface PublishingChannel<Message> {
  readonly hasSubscribers: boolean
  publish (message: Message): void
}

/**
 * The channels, held here for the process's life. Publish as undici does, so that nothing is built
 * while nobody listens: `if (channels.x.hasSubscribers) channels.x.publish({ … })`.
 * @internal
 */
export const channels = {
  streamStarted: channel(diagnosticsChannels.streamStarted) as PublishingChannel<StreamStartedMessage>,
  streamStopped: channel(diagnosticsChannels.streamStopped) as PublishingChannel<StreamStoppedMessage>,
  streamFailed: channel(diagnosticsChannels.streamFailed) as PublishingChannel<StreamFailedMessage>,
  clientConnected: channel(diagnosticsChannels.clientConnected) as PublishingChannel<ClientConnectedMessage>,
  clientDisconnected: channel(diagnosticsChannels.clientDisconnected) as PublishingChannel<ClientDisconnectedMessage>,
  clientConflated: channel(diagnosticsChannels.clientConflated) as PublishingChannel<ClientConflatedMessage>,
  clientStalled: channel(diagnosticsChannels.clientStalled) as PublishingChannel<ClientStalledMessage>,
  adapterCall: tracingChannel<unknown, AdapterCallContext>(diagnosticsChannels.adapterCall)
}

const adapterCall: TracingChannel<unknown, AdapterCallContext> = channels.adapterCall

/**
 * Whether anyone listens to the adapter TracingChannel. `TracingChannel#hasSubscribers` exists
 * from Node 20.13; before that, a subscriber on any of its five channels counts.
 * @internal
 */
export const adapterCallTraced: () => boolean = typeof (adapterCall as { hasSubscribers?: unknown }).hasSubscribers === 'boolean'
  ? () => adapterCall.hasSubscribers
  : () => adapterCall.start.hasSubscribers || adapterCall.end.hasSubscribers || adapterCall.asyncStart.hasSubscribers ||
    adapterCall.asyncEnd.hasSubscribers || adapterCall.error.hasSubscribers
