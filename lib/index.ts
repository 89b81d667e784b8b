import type { FastifyInstance, LogLevel } from 'fastify'
import fp from 'fastify-plugin'
import { FST_ERR_AGENT_SSE_ALREADY_REGISTERED, FST_ERR_AGENT_SSE_INVALID_OPTION } from './errors.js'
import { StreamLifecycle } from './lifecycle/stream-lifecycle.js'
import { resolveOptions, type AgentSseOptions } from './options.js'
import { agentSseRoutes, type ConnectionsHandle, type SseConnectionInfo } from './routes/index.js'

export type { AgentAdapter, MetricsSample, MetricsSink, StartStreamingOptions } from './adapter.js'
export * from './errors.js'
export { diagnosticsChannels } from './diagnostics.js'
export type {
  AdapterCallContext,
  AdapterOperation,
  ClientConflatedMessage,
  ClientConnectedMessage,
  ClientDisconnectedMessage,
  ClientStalledMessage,
  StreamFailedMessage,
  StreamStartedMessage,
  StreamStopReason,
  StreamStoppedMessage
} from './diagnostics.js'
export { StreamLifecycle, type StreamLifecycleOptions } from './lifecycle/stream-lifecycle.js'
export { localCoordinator } from './lifecycle/local-streams.js'
export type { Coordinator, CoordinatorContext, CoordinatedStreams } from './lifecycle/coordinator.js'
export type {
  CoordinatedSubscriber,
  GapInfo,
  HistoryEntry,
  HoldOptions,
  LifecycleLogger,
  LifecycleTimers,
  StreamState,
  StreamStatus,
  SubscribeOptions,
  Subscription
} from './lifecycle/types.js'
export type { AgentSseOptions } from './options.js'
export type { SseConnectionInfo } from './routes/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The plugin's per-agent reference-counting service. */
    streamLifecycle: StreamLifecycle
    /** The open SSE connections, with how much each has queued (for monitoring). */
    sseConnections (): SseConnectionInfo[]
  }
}

async function agentSsePlugin (fastify: FastifyInstance, pluginOptions: AgentSseOptions): Promise<void> {
  // Fastify's own FST_ERR_DEC_ALREADY_PRESENT would name a decorator, not the fix.
  if (fastify.hasDecorator('streamLifecycle')) throw new FST_ERR_AGENT_SSE_ALREADY_REGISTERED()
  const options = resolveOptions(pluginOptions)
  // fastify-plugin skips encapsulation, so Fastify does not apply register's `logLevel` here:
  // the plugin's own lines get it through a child logger, its routes through their scope.
  const { logLevel, logSerializers } = pluginOptions as { logLevel?: LogLevel, logSerializers?: Record<string, (value: unknown) => string> }
  // A misspelt level would otherwise fail inside pino with a message that names no option.
  const levels = Object.keys((fastify.log as { levels?: { values?: Record<string, number> } }).levels?.values ?? {})
  if (logLevel !== undefined && logLevel !== 'silent' && levels.length > 0 && !levels.includes(logLevel)) {
    throw new FST_ERR_AGENT_SSE_INVALID_OPTION('logLevel', `must be one of ${[...levels, 'silent'].join(', ')}, got ${JSON.stringify(logLevel)}`)
  }
  const log = logLevel === undefined ? fastify.log : fastify.log.child({}, { level: logLevel })
  const lifecycle = new StreamLifecycle({
    adapter: options.adapter,
    stopDelayMs: options.stopDelayMs,
    adapterTimeoutMs: options.adapterTimeoutMs,
    replayBufferSize: options.replayBufferSize,
    maxHolds: options.maxHolds,
    logger: log,
    coordinator: options.coordinator
  })
  const connectionsHandle: ConnectionsHandle = { list: () => [], closeAll: () => {} }
  // A cluster coordinator connects here: the server does not serve before it can (no 503s from a healthy start).
  await lifecycle.ready()
  fastify.decorate('streamLifecycle', lifecycle)
  fastify.decorate('sseConnections', () => connectionsHandle.list())
  // Agents left streaming by a previous process of this server are stopped before it serves.
  fastify.addHook('onReady', async () => { await lifecycle.stopOrphans() })
  // One shutdown, at the host's level (fastify-plugin), so it runs with the host's own preClose hooks
  // in registration order: register this plugin before one whose preClose closes your agent transport.
  // preClose, not onClose: the server does not finish closing while SSE responses are open. The
  // lifecycle closes first (subscribers hear `server-shutdown`), then every connection gets its
  // farewell and is ended, and the hook waits for the adapter's stops.
  fastify.addHook('preClose', async () => {
    const closing = lifecycle.close()
    connectionsHandle.closeAll()
    await closing
  })
  // fastify-plugin drops `prefix`, so the routes get their own encapsulated scope with it
  // while the decorators above still reach the host.
  await fastify.register(agentSseRoutes, {
    prefix: options.prefix,
    ...(logLevel === undefined ? {} : { logLevel }),
    ...(logSerializers === undefined ? {} : { logSerializers }),
    lifecycle,
    options,
    log,
    connectionsHandle
  })
}

/** The plugin. `fastify.register(agentSse, { adapter })`. */
export const agentSse = fp(agentSsePlugin, { name: 'fastify-agent-sse', fastify: '5.x' })
export default agentSse
