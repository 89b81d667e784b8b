// An agent process: connects to the server over WebSocket, registers its id, and collects real
// metrics of this machine and process only while the server has a task running on it.
//
//   node examples/remote-agents/agent.js --id edge-7 --server ws://127.0.0.1:3000/agents/ws
//
// It reconnects with exponential backoff when the server goes away and, on every (re)connect,
// reports the tasks it is still running, so that a restarted server can stop the ones it does not own.
import { createHostSampler } from '../host-metrics.js'
import { parseArgs } from 'node:util'
import { Value } from '@sinclair/typebox/value'
import WebSocket from 'ws'
import { AgentId, MAX_PAYLOAD_BYTES, ServerMessages, encode, parseMessage } from './protocol.js'

const usage = 'usage: node examples/remote-agents/agent.js --id <agent-id> [--server ws://127.0.0.1:3000/agents/ws] [--max-backoff-ms 10000] [--offline-grace-seconds 300]'
let args
try {
  args = parseArgs({
    options: {
      id: { type: 'string' },
      server: { type: 'string', default: 'ws://127.0.0.1:3000/agents/ws' },
      // Reconnect delays double from 250 ms up to this bound (±20% jitter, so a fleet does not reconnect in lockstep).
      'max-backoff-ms': { type: 'string', default: '10000' },
      // Unreachable server for this long: stop collecting, nobody can be watching. 0 = never.
      'offline-grace-seconds': { type: 'string', default: '300' },
      // No ping from the server for this long: the connection is presumed dead (the server pings every 15 s).
      'server-timeout-ms': { type: 'string', default: '40000' }
    }
  }).values
} catch (err) {
  console.error(`${err.message}\n${usage}`)
  process.exit(2)
}
const id = args.id
const serverUrl = args.server
const maxBackoffMs = Number(args['max-backoff-ms'])
const offlineGraceMs = Number(args['offline-grace-seconds']) * 1000
const serverTimeoutMs = Number(args['server-timeout-ms'])
if (!Value.Check(AgentId, id) || !/^wss?:\/\//.test(serverUrl) || !(maxBackoffMs >= 250) || !(offlineGraceMs >= 0) || !(serverTimeoutMs > 0)) {
  console.error(`invalid arguments\n${usage}`)
  process.exit(2)
}

const log = (line) => console.log(`agent ${id}: ${line}`)
const collector = () => createHostSampler(id)

/** taskId → { intervalSeconds, timer, sample } */
const tasks = new Map()
let socket = null
let attempt = 0
let reconnectTimer = null
let serverTimer = null
let offlineTimer = null
let shuttingDown = false

function sendMessage (message) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(encode(message))
}

function schedule (taskId, task) {
  clearInterval(task.timer)
  // Collected even while disconnected (the task is still ours); sent only when connected.
  task.timer = setInterval(() => {
    const metrics = task.sample()
    sendMessage({ type: 'sample', taskId, metrics })
  }, task.intervalSeconds * 1000)
}

function startCollecting (taskId, intervalSeconds) {
  if (tasks.has(taskId)) return // a repeated start (the ack was lost): already running
  const task = { intervalSeconds, timer: null, sample: collector() }
  tasks.set(taskId, task)
  schedule(taskId, task)
  log(`collecting started (task ${taskId}, every ${intervalSeconds}s)`)
}

function stopCollecting (taskId, why = '') {
  const task = tasks.get(taskId)
  if (!task) return
  clearInterval(task.timer)
  tasks.delete(taskId)
  log(`collecting stopped (task ${taskId})${why}`)
}

function onServerMessage (message) {
  switch (message.type) {
    case 'welcome':
      attempt = 0
      log(`registered with ${serverUrl} (reported ${tasks.size} running task(s))`)
      break
    case 'start':
      startCollecting(message.taskId, message.intervalSeconds)
      sendMessage({ type: 'ack', requestId: message.requestId })
      break
    case 'stop':
      // Idempotent: stopping a task this agent does not run is acknowledged too.
      stopCollecting(message.taskId)
      sendMessage({ type: 'ack', requestId: message.requestId })
      break
    case 'change-interval': {
      const task = tasks.get(message.taskId)
      if (!task) {
        sendMessage({ type: 'nack', requestId: message.requestId, error: `no task ${message.taskId}` })
        break
      }
      task.intervalSeconds = message.intervalSeconds
      schedule(message.taskId, task)
      log(`collecting every ${message.intervalSeconds}s now (task ${message.taskId})`)
      sendMessage({ type: 'ack', requestId: message.requestId })
      break
    }
    case 'current': {
      // CPU use is a rate: measure it over a short window.
      const sample = collector()
      setTimeout(() => sendMessage({ type: 'current-metrics', requestId: message.requestId, metrics: sample() }), 200)
      break
    }
  }
}

function watchServer () {
  clearTimeout(serverTimer)
  serverTimer = setTimeout(() => {
    log(`no ping from the server for ${serverTimeoutMs} ms, dropping the connection`)
    socket?.terminate()
  }, serverTimeoutMs)
}

function connect () {
  reconnectTimer = null
  const ws = new WebSocket(serverUrl, { maxPayload: MAX_PAYLOAD_BYTES, handshakeTimeout: 5000 })
  socket = ws
  ws.on('open', () => {
    clearTimeout(offlineTimer)
    offlineTimer = null
    watchServer()
    log(`connected to ${serverUrl}`)
    const running = [...tasks].map(([taskId, task]) => ({ taskId, intervalSeconds: task.intervalSeconds }))
    sendMessage({ type: 'hello', agentId: id, tasks: running })
  })
  ws.on('ping', watchServer)
  ws.on('message', (data, isBinary) => {
    const { message, error } = parseMessage(data, isBinary, ServerMessages)
    if (error) {
      log(`dropped a malformed message from the server: ${error}`)
      return
    }
    try {
      onServerMessage(message)
    } catch (err) {
      log(`handling "${message.type}" failed: ${err.message}`)
    }
  })
  // Connection refused, an oversized frame…: 'close' follows, which schedules the reconnect.
  ws.on('error', (err) => log(`connection error: ${err.message}`))
  ws.on('close', (code, reason) => {
    clearTimeout(serverTimer)
    if (socket !== ws) return
    socket = null
    if (shuttingDown) return
    if (code === 4000) {
      // The server gave this id to a newer connection: another process runs with the same --id.
      log(`another agent registered with id ${id} (${reason}); exiting`)
      shutdown(1)
      return
    }
    if (offlineTimer === null && offlineGraceMs > 0 && tasks.size > 0) {
      offlineTimer = setTimeout(() => {
        for (const taskId of [...tasks.keys()]) stopCollecting(taskId, `: server unreachable for ${offlineGraceMs / 1000} s`)
      }, offlineGraceMs)
    }
    const base = Math.min(maxBackoffMs, 250 * 2 ** attempt)
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()))
    attempt++
    log(`disconnected (code ${code}), reconnecting in ${delay} ms`)
    reconnectTimer = setTimeout(connect, delay)
  })
}

function shutdown (exitCode = 0) {
  if (shuttingDown) return
  shuttingDown = true
  clearTimeout(reconnectTimer)
  clearTimeout(offlineTimer)
  clearTimeout(serverTimer)
  for (const taskId of [...tasks.keys()]) stopCollecting(taskId, ': agent shutting down')
  if (socket) {
    socket.once('close', () => process.exit(exitCode))
    socket.close(1001, 'agent shutting down')
    setTimeout(() => process.exit(exitCode), 1000).unref()
  } else {
    process.exit(exitCode)
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => shutdown(0))
log(`starting, server ${serverUrl}`)
connect()
