// The server side of the remote-agents example: agent processes (agent.js) connect over WebSocket
// at /agents/ws, and browsers stream their metrics over SSE through fastify-agent-sse.
//
//   PORT=3000 HOST=127.0.0.1 STOP_DELAY_MS=2000 EXPECTED_AGENTS=edge-1,edge-2 node examples/remote-agents/server.js
//
// The plugin's routes are under the prefix '/api' (GET /api/agents/edge-1/metrics/stream,
// GET /api/streams, …); the agents' WebSocket endpoint is outside it, at /agents/ws.
import websocket from '@fastify/websocket'
import Fastify from 'fastify'
import agentSse from 'fastify-agent-sse'
import { serveDashboard } from '../dashboard.js'
import { MAX_PAYLOAD_BYTES } from './protocol.js'
import { createWsAgentHub } from './ws-adapter.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const stopDelayMs = Number(process.env.STOP_DELAY_MS ?? 2000)
// Agents the dashboard shows even before they connect (fleet.js names the ones it starts).
const expectedAgents = (process.env.EXPECTED_AGENTS ?? '').split(',').filter(Boolean)

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })

const hub = createWsAgentHub({
  log: app.log,
  // An agent that (re)connects reports the tasks it still runs: tasks of a previous server process,
  // or of its own dropped connection (which this process already ended with agent-offline). Stop
  // each one this process does not own. Checked per task with agentsOfTask rather than through
  // app.streamLifecycle.stopOrphans(), which spares every task of an agent while a start for that
  // agent is in flight, as it is when a browser comes back at the moment the agent does.
  onAgentRegistered (agentId, tasks) {
    for (const { taskId } of tasks) {
      if (app.streamLifecycle.agentsOfTask(taskId).includes(agentId)) continue
      app.log.warn({ agentId, taskId }, `Stopping orphaned metrics streaming task ${taskId} of agent ${agentId} (reported on reconnect, not started by this process)`)
      hub.adapter.stopMetricsStreaming(agentId, taskId).catch((err) => {
        app.log.error({ agentId, taskId, err }, `Failed to stop orphaned task ${taskId} of agent ${agentId}: ${err.message}`)
      })
    }
  }
})

// Stop the agents' tasks while their sockets are still open: @fastify/websocket closes every
// socket in its own preClose hook, registered before the plugin's (preClose hooks run in order).
app.addHook('preClose', () => app.streamLifecycle.close())
app.addHook('onClose', async () => hub.close())

await app.register(websocket, {
  // A bigger frame closes that socket with 1009 (logged); the agent reconnects.
  options: { maxPayload: MAX_PAYLOAD_BYTES },
  // The hub logs socket errors with the agent's id, and ws closes a socket after an error itself
  // (1009 for an oversized frame): unlike the default handler, do not cut it before that close frame.
  errorHandler (err, _socket, request) {
    request.log.debug({ err }, 'agent socket error')
  }
})
app.get('/agents/ws', { websocket: true }, (socket, request) => hub.handleConnection(socket, request))

await app.register(agentSse, { adapter: hub.adapter, prefix: '/api', stopDelayMs, defaultIntervalSeconds: 1 })
// The example dashboard at /: the expected agents and every one connected now.
await serveDashboard(app, () => ({
  agents: [...new Set([...expectedAgents, ...hub.connectedAgents()])].sort(),
  stop_delay_ms: stopDelayMs
}))

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}

const address = await app.listen({ port, host })
const wsAddress = address.replace(/^http/, 'ws')
console.log(`
fastify-agent-sse remote agents: server on ${address}
  dashboard: ${address}/ (reload it to see agents that connected since)
  agents connect to ${wsAddress}/agents/ws, for example:
    node examples/remote-agents/agent.js --id edge-7 --server ${wsAddress}/agents/ws
  API under ${address}/api, for example:
    curl -N ${address}/api/agents/edge-7/metrics/stream?interval_seconds=1
    curl ${address}/api/streams
`)
