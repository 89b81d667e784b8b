// The fleet page: every agent of the server as a tile, all of them over one EventSource (the
// plugin's fleet stream), with each agent's status pushed on that stream when it changes.
import { AgentStreamClient } from '/client.js'
import { CLOSED, CONNECTING, OPEN, reportingEventSource } from '/live-source.js'
import { AgentTile } from '/tile.js'

// The single-agent view lived at /?agent=… before this page did: old links still land there.
const wanted = new URLSearchParams(location.search).get('agent')
if (wanted !== null) {
  location.replace(`/agent.html?agent=${encodeURIComponent(wanted)}`)
  await new Promise(() => {}) // this page goes away: open nothing
}

/** The plugin's `maxAgentsPerStream` default: a longer list is split over several streams. */
const AGENTS_PER_STREAM = 100
const INTERVAL_SECONDS = 1
const $ = (id) => document.getElementById(id)

const { agents, labels = {}, stop_delay_ms: stopDelayMs } = await (await fetch('/example/agents')).json()
const tiles = new Map(agents.map((agentId) => [agentId, new AgentTile(agentId, labels[agentId])]))
$('tiles').replaceChildren(...[...tiles.values()].map((tile) => tile.root))
$('hint').textContent = `CPU (solid) and memory (dashed) over the last minute, in %. Closing this page stops every agent ${stopDelayMs / 1000} s later, unless someone else watches it.`

const streams = []
for (let first = 0; first < agents.length; first += AGENTS_PER_STREAM) {
  streams.push(watchAgents(agents.slice(first, first + AGENTS_PER_STREAM)))
}

/** One fleet stream for some agents, reopened (after a pause that grows) when an agent ended or the server refused it. */
function watchAgents (agentIds) {
  const state = { readyState: CONNECTING, everOpen: false, refused: false, reopenAt: 0, reopenDelayMs: 2000, timer: null, stream: null }
  /** Agents over on this stream since it was last reopened. */
  const over = new Set()
  const client = new AgentStreamClient({
    baseUrl: '/api',
    EventSource: reportingEventSource((readyState) => {
      state.readyState = readyState
      if (readyState === OPEN) {
        state.everOpen = true
        state.refused = false
      }
      for (const agentId of agentIds) tiles.get(agentId).setConnected(readyState === OPEN)
      // Closed by the client (every agent over) or by the server's refusal: nothing reconnects by itself.
      if (readyState === CLOSED) reopenLater()
      showConnection()
    })
  })

  function reopenLater () {
    if (state.timer !== null) return
    state.reopenAt = Date.now() + state.reopenDelayMs
    state.timer = setTimeout(() => {
      // setAgents closes the old EventSource first: that CLOSED is ours, not a reason to reopen again.
      state.stream.setAgents(agentIds)
      state.timer = null
    }, state.reopenDelayMs)
    state.reopenDelayMs = Math.min(30_000, state.reopenDelayMs * 2)
    showConnection()
  }

  state.stream = client.streamFleet(agentIds, INTERVAL_SECONDS, {
    onMetrics (agentId, sample, eventId) {
      if (over.delete(agentId)) state.reopenDelayMs = 2000 // it is back
      tiles.get(agentId)?.sample(sample, eventId)
    },
    onStatus: (status) => tiles.get(status.agent_id)?.setStatus(status),
    // The agent is over on this stream (cancelled, offline, failed to start): the others go on,
    // and the stream is reopened for it a little later.
    onEnd (agentId, reason) {
      over.add(agentId)
      tiles.get(agentId)?.ended(reason)
      reopenLater()
    },
    onServerError (agentId, err) {
      over.add(agentId)
      tiles.get(agentId)?.ended(`error ${err.statusCode}`)
      reopenLater()
    },
    onRefused () {
      state.refused = true
      showConnection()
    }
  })
  return state
}

function showConnection () {
  const open = streams.filter((stream) => stream.readyState === OPEN).length
  const waiting = streams.filter((stream) => stream.timer !== null)
  let text = 'live'
  let state = 'open'
  if (streams.some((stream) => stream.refused)) {
    text = 'stream refused by the server'
    state = 'refused'
  } else if (waiting.length > 0) {
    text = 'stream closed'
    state = 'down'
  } else if (open < streams.length) {
    text = streams.some((stream) => stream.everOpen) ? 'disconnected: reconnecting…' : 'connecting…'
    state = 'down'
  }
  if (waiting.length > 0) {
    const seconds = Math.max(0, Math.ceil((Math.min(...waiting.map((stream) => stream.reopenAt)) - Date.now()) / 1000))
    text += `; reopening in ${seconds} s`
  }
  const connection = $('connection')
  connection.textContent = streams.length > 1 ? `${text} (${open}/${streams.length} streams open)` : text
  connection.dataset.state = state
}

function tick () {
  const now = Date.now()
  let streaming = 0
  let fresh = 0
  for (const tile of tiles.values()) {
    tile.draw(now)
    if (tile.status?.streaming_active) streaming++
    if (tile.root.dataset.stale === 'false') fresh++
  }
  const connected = streams.every((stream) => stream.readyState === OPEN)
  $('summary').textContent = connected
    ? `${tiles.size} agents · ${streaming} streaming · ${fresh} with live data`
    : `${tiles.size} agents · status unknown while disconnected`
  showConnection()
}
tick()
setInterval(tick, 1000)
