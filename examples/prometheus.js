// Prometheus metrics for fastify-agent-sse, fed by its diagnostics channels: no polling, and the
// plugin knows nothing of prom-client. Copy this file; examples/server.js serves it at GET /metrics.
//
//   const metrics = agentSseMetrics()          // before the server accepts connections
//   app.get('/metrics', async (request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()))
//
// The channels are subscribed to by name, as undici's and Fastify's are. In a cluster, stream
// starts and stops are counted by the instance that owns the agent's stream; clients by the
// instance they are connected to.
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * Registers the metrics on `registry` (a new one by default) and subscribes to the channels.
 * Gauges count from the moment of the call: make it before the server listens. `close()` unsubscribes.
 */
export function agentSseMetrics ({ registry = new Registry(), prefix = 'agent_sse_' } = {}) {
  const registers = [registry]
  const sseClients = new Gauge({ name: `${prefix}clients`, help: 'Open SSE connections (a fleet connection counts once)', registers })
  const fleetConnections = new Gauge({ name: `${prefix}fleet_connections`, help: 'Open fleet SSE connections (GET /metrics/stream?agents=…)', registers })
  const liveStreams = new Gauge({ name: `${prefix}live_streams`, help: 'Agent metrics streams started and not yet stopped', registers })
  const starts = new Counter({ name: `${prefix}stream_starts_total`, help: 'Agent metrics streams started', registers })
  const stops = new Counter({ name: `${prefix}stream_stops_total`, help: 'Agent metrics streams stopped, by reason', labelNames: ['reason'], registers })
  const failures = new Counter({ name: `${prefix}stream_failures_total`, help: 'Failed starts (phase="start") and failed live streams (phase="stream")', labelNames: ['phase'], registers })
  const conflated = new Counter({ name: `${prefix}conflated_frames_total`, help: 'Frames a slow client never got: replaced by a newer one while it was not draining', registers })
  const stalls = new Counter({ name: `${prefix}stall_disconnects_total`, help: 'Clients dropped for not draining within stallTimeoutMs', registers })
  const adapterCalls = new Histogram({
    name: `${prefix}adapter_call_duration_seconds`,
    help: 'Adapter calls, from the call to its answer, error or timeout (adapterTimeoutMs)',
    labelNames: ['operation', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers
  })

  // Known label values start at 0, so that a rate() over them has a series from the first scrape.
  for (const reason of ['no-demand', 'cancelled', 'server-shutdown', 'interval-change', 'stream-failed', 'ended-by-agent']) stops.inc({ reason }, 0)
  for (const phase of ['start', 'stream']) failures.inc({ phase }, 0)

  const listeners = {
    'fastify-agent-sse:client:connected' ({ fleet }) {
      sseClients.inc()
      if (fleet) fleetConnections.inc()
    },
    'fastify-agent-sse:client:disconnected' ({ fleet }) {
      sseClients.dec()
      if (fleet) fleetConnections.dec()
    },
    'fastify-agent-sse:stream:started' () {
      starts.inc()
      liveStreams.inc()
    },
    'fastify-agent-sse:stream:stopped' ({ reason }) {
      stops.inc({ reason })
      liveStreams.dec()
    },
    'fastify-agent-sse:stream:failed' ({ phase }) { failures.inc({ phase }) },
    'fastify-agent-sse:client:conflated' () { conflated.inc() },
    'fastify-agent-sse:client:stalled' () { stalls.inc() }
  }
  for (const [name, listener] of Object.entries(listeners)) subscribe(name, listener)

  // One context object per adapter call: it keys the call's start time.
  const startedAt = new WeakMap()
  const adapterTracing = tracingChannel('fastify-agent-sse:adapter')
  const tracing = {
    start (context) { startedAt.set(context, performance.now()) },
    asyncEnd (context) {
      const started = startedAt.get(context)
      if (started === undefined) return
      const outcome = context.error === undefined ? 'ok' : context.error?.code === 'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT' ? 'timeout' : 'error'
      adapterCalls.observe({ operation: context.operation, outcome }, (performance.now() - started) / 1000)
    }
  }
  adapterTracing.subscribe(tracing)

  return {
    registry,
    close () {
      for (const [name, listener] of Object.entries(listeners)) unsubscribe(name, listener)
      adapterTracing.unsubscribe(tracing)
    }
  }
}
