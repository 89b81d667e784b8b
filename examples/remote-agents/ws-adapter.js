// An AgentAdapter over WebSocket connections from agent processes (see agent.js and protocol.js).
//
// Each agent connects to the server, says `hello` with its id and the tasks it is still running,
// and then answers commands. The adapter keeps, per connected agent, the tasks the agent runs
// (what it reported, plus the starts it acknowledged, minus the stops it acknowledged) and the
// plugin's sink for each task this process started, and turns the socket's life into the
// plugin's vocabulary: a socket that drops ends its tasks with `agent-offline`.
import { randomUUID } from 'node:crypto'
import { AgentMessages, encode, parseMessage } from './protocol.js'

const OPEN = 1 // WebSocket.OPEN

export function createWsAgentHub ({
  log,
  requestTimeoutMs = 5000, // below the plugin's adapterTimeoutMs (10 s) so this clearer error wins
  helloTimeoutMs = 5000,
  heartbeatIntervalMs = 15000,
  onAgentRegistered = () => {}
}) {
  /** agentId → the agent's current connection. */
  const agents = new Map()
  /** Every open socket, registered or not, for the heartbeat. */
  const sockets = new Set()

  // Heartbeat: a peer that has not answered the previous ping is gone (half-open TCP, a sleeping laptop…).
  const heartbeat = setInterval(() => {
    for (const socket of sockets) {
      if (socket.missedPong) {
        log.warn('agent socket did not answer a ping, terminating it')
        socket.terminate()
        continue
      }
      socket.missedPong = true
      socket.ping()
    }
  }, heartbeatIntervalMs)
  heartbeat.unref()

  /** Resolves once written; rejects if the socket is not open (closing, for example) or the write fails. */
  function send (conn, message) {
    return new Promise((resolve, reject) => {
      if (conn.socket.readyState !== OPEN) {
        reject(new Error(`agent ${conn.agentId} is not connected`))
        return
      }
      conn.socket.send(encode(message), (err) => (err ? reject(err) : resolve()))
    })
  }

  /**
   * Sends a command and resolves with the agent's answer (`ack` or `current-metrics`), matched by
   * `requestId`. Rejects on `nack`, on timeout, or when the socket drops (unless `offline: 'resolve'`).
   */
  function request (conn, message, { expect = 'ack', offline = 'reject', signal } = {}) {
    const requestId = randomUUID()
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'))
    return new Promise((resolve, reject) => {
      const settle = (fn, value) => {
        if (!conn.pending.delete(requestId)) return
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        fn(value)
      }
      const timer = setTimeout(() => {
        settle(reject, new Error(`agent ${conn.agentId} did not answer "${message.type}" within ${requestTimeoutMs} ms`))
      }, requestTimeoutMs)
      const onAbort = () => settle(reject, signal.reason ?? new Error('aborted'))
      signal?.addEventListener('abort', onAbort, { once: true })
      conn.pending.set(requestId, {
        type: message.type,
        expect,
        resolve: (value) => settle(resolve, value),
        reject: (err) => settle(reject, err),
        offline: () => (offline === 'resolve' ? settle(resolve) : settle(reject, new Error(`agent ${conn.agentId} went offline during "${message.type}"`)))
      })
      // A socket that is already closing counts as offline (a stop then resolves at once).
      send(conn, { ...message, requestId }).catch(() => conn.pending.get(requestId)?.offline())
    })
  }

  function connectionOf (agentId) {
    const conn = agents.get(agentId)
    if (!conn) throw new Error(`agent ${agentId} is not connected`)
    return conn
  }

  /** The socket is gone: every task it carried ends for the plugin, every pending request settles. */
  function goOffline (conn, why) {
    if (conn.offline) return
    conn.offline = true
    if (agents.get(conn.agentId) === conn) agents.delete(conn.agentId)
    const ended = [...conn.sinks.keys()]
    const sinks = [...conn.sinks.values()]
    conn.sinks.clear()
    for (const sink of sinks) sink.end('agent-offline')
    for (const pending of [...conn.pending.values()]) pending.offline()
    log.info({ agentId: conn.agentId, endedTasks: ended }, `agent ${conn.agentId} went offline (${why}); ended ${ended.length} task(s)`)
  }

  function register (socket, hello, remote) {
    const { agentId, tasks } = hello
    const previous = agents.get(agentId)
    if (previous) {
      // The same id again: most likely the agent reconnected before its old socket was noticed dead.
      goOffline(previous, 'replaced by a new connection')
      previous.socket.close(4000, 'replaced by a new connection with the same agent id')
    }
    const conn = {
      agentId,
      socket,
      offline: false,
      pending: new Map(),
      /** taskId → intervalSeconds: what the agent runs now, as far as it told us. */
      running: new Map(tasks.map((task) => [task.taskId, task.intervalSeconds])),
      /** taskId → the plugin's sink, for the tasks this process started on this connection. */
      sinks: new Map()
    }
    agents.set(agentId, conn)
    log.info({ agentId, remote, tasks: tasks.map((task) => task.taskId) }, `agent ${agentId} registered from ${remote} (running ${tasks.length} task(s))`)
    send(conn, { type: 'welcome', agentId }).catch(() => {})
    // Deferred past the microtasks in which the plugin settles what goOffline(previous) ended or
    // resolved (a stop in flight on the old socket, for example), so it no longer counts those tasks as its own.
    setImmediate(() => {
      try {
        onAgentRegistered(agentId, tasks)
      } catch (err) {
        log.error({ agentId, err }, `after registering agent ${agentId}: ${err.message}`)
      }
    })
    return conn
  }

  function onAgentMessage (conn, message) {
    switch (message.type) {
      case 'sample': {
        const sink = conn.sinks.get(message.taskId)
        if (sink) sink.push(message.metrics)
        // A sample of a task this process does not own (an orphan being stopped, a late one): dropped.
        return
      }
      case 'ack':
      case 'nack':
      case 'current-metrics': {
        const pending = conn.pending.get(message.requestId)
        if (!pending) {
          log.warn({ agentId: conn.agentId, requestId: message.requestId }, `agent ${conn.agentId}: "${message.type}" for no pending request, dropped`)
        } else if (message.type === 'nack') {
          pending.reject(new Error(`agent ${conn.agentId} refused "${pending.type}": ${message.error}`))
        } else if (message.type !== pending.expect) {
          log.warn({ agentId: conn.agentId }, `agent ${conn.agentId}: "${message.type}" answers a "${pending.type}", dropped`)
        } else {
          pending.resolve(message.type === 'current-metrics' ? message.metrics : undefined)
        }
        return
      }
      case 'hello':
        log.warn({ agentId: conn.agentId }, `agent ${conn.agentId}: second hello on one connection, dropped`)
    }
  }

  /** The @fastify/websocket route handler for the agents' endpoint. */
  function handleConnection (socket, req) {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    let conn = null
    sockets.add(socket)
    socket.missedPong = false
    socket.on('pong', () => { socket.missedPong = false })
    const helloTimer = setTimeout(() => {
      log.warn({ remote }, `no valid hello from ${remote} within ${helloTimeoutMs} ms, closing`)
      socket.close(1008, 'hello expected')
    }, helloTimeoutMs)

    socket.on('message', (data, isBinary) => {
      const { message, error } = parseMessage(data, isBinary, AgentMessages)
      if (error) {
        log.warn({ agentId: conn?.agentId, remote }, `dropped a malformed message from ${conn ? `agent ${conn.agentId}` : remote}: ${error}`)
        return
      }
      try {
        if (conn) {
          onAgentMessage(conn, message)
        } else if (message.type === 'hello') {
          clearTimeout(helloTimer)
          conn = register(socket, message, remote)
        } else {
          log.warn({ remote }, `dropped "${message.type}" from ${remote}: hello expected first`)
        }
      } catch (err) {
        // A bug in handling one message must not take the server (or the connection) down.
        log.error({ err, agentId: conn?.agentId }, `handling "${message.type}" failed: ${err.message}`)
      }
    })
    // @fastify/websocket also logs socket errors (an oversized frame, for example) and terminates the socket.
    socket.on('error', (err) => log.warn({ agentId: conn?.agentId, remote }, `agent socket error: ${err.message}`))
    socket.on('close', (code, reason) => {
      clearTimeout(helloTimer)
      sockets.delete(socket)
      if (conn) goOffline(conn, `socket closed, code ${code}${reason.length ? `: ${reason}` : ''}`)
    })
  }

  /** The AgentAdapter the plugin is registered with. */
  const adapter = {
    agentExists (agentId) {
      return agents.has(agentId)
    },

    async startMetricsStreaming (agentId, { intervalSeconds, signal }, sink) {
      const conn = connectionOf(agentId)
      const taskId = randomUUID()
      // Registered before the command is sent: samples may arrive right after the ack.
      conn.sinks.set(taskId, sink)
      try {
        await request(conn, { type: 'start', taskId, intervalSeconds }, { signal })
        conn.running.set(taskId, intervalSeconds)
        log.info({ agentId, taskId }, `agent ${agentId} acknowledged start of task ${taskId} (every ${intervalSeconds}s)`)
        return { taskId }
      } catch (err) {
        conn.sinks.delete(taskId)
        // The agent may still start it (a late ack after a timeout or an abort): make sure it does not keep it.
        if (!conn.offline) request(conn, { type: 'stop', taskId }, { offline: 'resolve' }).then(() => conn.running.delete(taskId), () => {})
        throw err
      }
    },

    async stopMetricsStreaming (agentId, taskId) {
      // The connection now, which may be newer than the one the task started on (a reconnect).
      const conn = agents.get(agentId)
      if (!conn) return // offline: its tasks already ended, and it reports any it still runs on reconnect
      conn.sinks.delete(taskId)
      await request(conn, { type: 'stop', taskId }, { offline: 'resolve' })
      conn.running.delete(taskId)
    },

    async changeInterval (agentId, taskId, intervalSeconds) {
      const conn = connectionOf(agentId)
      await request(conn, { type: 'change-interval', taskId, intervalSeconds })
      if (conn.running.has(taskId)) conn.running.set(taskId, intervalSeconds)
    },

    async getCurrentMetrics (agentId) {
      return request(connectionOf(agentId), { type: 'current' }, { expect: 'current-metrics' })
    },

    // Used by the plugin when the server is ready, and by app.streamLifecycle.stopOrphans().
    async listStreamingTasks () {
      const tasks = []
      for (const conn of agents.values()) {
        for (const taskId of conn.running.keys()) tasks.push({ agentId: conn.agentId, taskId })
      }
      return tasks
    }
  }

  return {
    adapter,
    handleConnection,
    /** Ids of the connected agents. */
    connectedAgents: () => [...agents.keys()],
    /** Stops the heartbeat and closes every agent socket (after the plugin stopped their tasks). */
    close () {
      clearInterval(heartbeat)
      for (const socket of sockets) socket.close(1001, 'server shutting down')
    }
  }
}
