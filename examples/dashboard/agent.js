// One agent in detail: its samples over the last two minutes (uPlot), its latest sample, its
// status as the server pushes it, manual control and a log of lifecycle events. Samples and
// status come over one EventSource (the plugin's fleet stream, for this one agent).
import { AgentStreamClient } from '/client.js'
import { CLOSED, CONNECTING, OPEN, reportingEventSource } from '/live-source.js'
import { chartColors, onColorSchemeChange, themedAxis } from '/theme.js'
import uPlot from '/vendor/uPlot.esm.js'

const WINDOW_SECONDS = 120
const CHART_HEIGHT = 220
const $ = (id) => document.getElementById(id)

let agentId = new URLSearchParams(location.search).get('agent') ?? 'local'
let stream = null
let readyState = CONNECTING
let everOpen = false
let lastState = null
let retryTimer = null
let watchedAgentId = null
/** The agent's clock minus ours at the last sample: the window ends at the agent's "now". */
let clockOffsetSeconds = 0
let intervalSeconds = 1
const series = { time: [], cpu: [], memory: [], load: [] }

const client = new AgentStreamClient({
  baseUrl: '/api',
  EventSource: reportingEventSource((state) => {
    readyState = state
    if (state === OPEN) everOpen = true
    showConnection()
  })
})

const usageChart = new uPlot(chartOptions([
  { label: 'CPU %', stroke: () => chartColors.cpu, width: 2 },
  { label: 'Memory %', stroke: () => chartColors.memory, width: 2 }
], () => [0, 100]), [[], [], []], $('chart-usage'))
// A load of 0.10 to 0.14 is no reason to fill the chart with it: the scale starts at 0 and
// reaches at least 1, in steps of 0.5.
const loadChart = new uPlot(chartOptions([{ label: 'Load 1m', stroke: () => chartColors.load, width: 2 }],
  (_u, _min, max) => [0, Math.max(1, Math.ceil(((max ?? 0) * 1.15) * 2) / 2)]), [[], []], $('chart-load'))
const charts = [usageChart, loadChart]

function chartOptions (lines, yRange) {
  return {
    width: chartWidth(),
    height: CHART_HEIGHT,
    // The x scale is a fixed window set on every tick (slide), never fitted to the data: one
    // sample would otherwise span years, and samples after a restart a few milliseconds.
    scales: { x: { time: true, auto: false }, y: { range: yRange } },
    axes: [themedAxis({ space: 70 }), themedAxis({ size: 44 })],
    series: [{}, ...lines],
    legend: { live: false },
    hooks: {
      // What the chart spans once uPlot applied it, for a test to read: it must not follow the data.
      setScale: [(chart, key) => {
        if (key === 'x') chart.root.parentElement.dataset.windowSeconds = String(Math.round(chart.scales.x.max - chart.scales.x.min))
      }]
    }
  }
}

function chartWidth () {
  return Math.max(200, ($('chart-usage').clientWidth || 520) - 4)
}
new ResizeObserver(() => {
  const width = chartWidth()
  // The charts' own height changes reach here too: only a new width is worth a redraw.
  if (width !== usageChart.width) for (const chart of charts) chart.setSize({ width, height: CHART_HEIGHT })
}).observe($('chart-usage').parentElement)
onColorSchemeChange(() => { for (const chart of charts) chart.redraw(false) })

function slideWindow () {
  const end = Date.now() / 1000 + clockOffsetSeconds
  for (const chart of charts) chart.setScale('x', { min: end - WINDOW_SECONDS, max: end })
}

function log (message) {
  const item = document.createElement('li')
  item.textContent = `${new Date().toLocaleTimeString()}  ${message}`
  $('log').prepend(item)
  while ($('log').children.length > 200) $('log').lastChild.remove()
}

function render (sample, eventId) {
  const now = Date.now() / 1000
  const parsed = Date.parse(sample.timestamp) / 1000
  const t = Number.isFinite(parsed) ? parsed : now
  clockOffsetSeconds = t - now
  addPoint(t, [numberOrNull(sample.cpu_percent), numberOrNull(sample.memory_percent), numberOrNull(sample.load_1m)])
  usageChart.setData([series.time, series.cpu, series.memory], false)
  loadChart.setData([series.time, series.load], false)
  slideWindow()
  // Agent data is shown as text, never parsed as HTML: a key or value may hold markup.
  $('latest').replaceChildren(...Object.entries(sample).map(([key, value]) => tableRow(key, Array.isArray(value) ? value.join(', ') : String(value))))
  $('last-event-id').textContent = String(eventId)
}

/** Keeps the points ascending by time, one per timestamp, within the window; a pause breaks the lines. */
function addPoint (t, values) {
  const { time } = series
  const columns = [series.cpu, series.memory, series.load]
  let index = time.length
  while (index > 0 && time[index - 1] > t) index--
  if (index > 0 && time[index - 1] === t) {
    columns.forEach((column, i) => { column[index - 1] = values[i] })
    return
  }
  const gapSeconds = Math.max(3, 2.5 * intervalSeconds)
  if (index > 0 && index === time.length && t - time[index - 1] > gapSeconds) {
    // A null between two samples far apart: uPlot draws no line across the silence.
    time.push(time[index - 1] + intervalSeconds)
    for (const column of columns) column.push(null)
    index++
  }
  time.splice(index, 0, t)
  columns.forEach((column, i) => column.splice(index, 0, values[i]))
  const oldest = time.at(-1) - WINDOW_SECONDS - 10
  while (time.length > 0 && time[0] < oldest) {
    time.shift()
    for (const column of columns) column.shift()
  }
}

function numberOrNull (value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

function tableRow (...texts) {
  const row = document.createElement('tr')
  for (const text of texts) {
    const cell = document.createElement('td')
    cell.textContent = text
    row.append(cell)
  }
  return row
}

function watch () {
  stream?.close()
  clearTimeout(retryTimer)
  everOpen = false // a new stream: "connecting", not "reconnecting"
  if (watchedAgentId !== agentId) {
    for (const values of Object.values(series)) values.length = 0
    for (const chart of charts) chart.setData(chart === usageChart ? [[], [], []] : [[], []], false)
    watchedAgentId = agentId
  }
  intervalSeconds = Number($('interval').value)
  $('watch').hidden = true
  log(`watching ${agentId} every ${intervalSeconds}s`)
  stream = client.streamFleet([agentId], intervalSeconds, {
    onMetrics: (_agentId, sample, eventId) => render(sample, eventId),
    onStatus: showStatus,
    onGap: (_agentId, { missed }) => log(`resumed; ${missed} samples were no longer held`),
    onEnd (_agentId, reason) {
      if (reason === 'server-shutdown') {
        // Most likely a restart: try again, and the EventSource keeps trying until the server is back.
        log('stream ended: server-shutdown (watching again in 3 s)')
        retryTimer = setTimeout(watch, 3000)
        return
      }
      log(`stream ended: ${reason}`)
      $('watch').hidden = false
    },
    onServerError (_agentId, err) {
      log(`agent stream failed: ${err.message} (retrying in 5 s)`)
      retryTimer = setTimeout(watch, 5000)
    },
    onRefused (err) {
      log(`stream refused: ${err.message}`)
      $('watch').hidden = false
    }
  })
}

/** What the page knows of the agent now; `null`: nothing (the server does not answer). */
function showStatus (status) {
  if (status === null) {
    $('streaming-active').textContent = 'unknown'
    $('streaming-active').className = 'unknown'
    $('state').textContent = readyState === CONNECTING ? 'unknown (reconnecting)' : 'unknown'
    for (const id of ['sse-clients', 'manual-hold', 'stream-interval', 'task-id']) $(id).textContent = '–'
    $('cancel').disabled = true
    return
  }
  $('streaming-active').textContent = String(status.streaming_active)
  $('streaming-active').className = status.streaming_active ? 'on' : 'off'
  $('state').textContent = status.state
  $('sse-clients').textContent = String(status.sse_clients)
  $('manual-hold').textContent = status.manual_hold ? 'yes' : 'no'
  $('stream-interval').textContent = status.interval_seconds === null ? '–' : `${status.interval_seconds} s (asked: ${status.requested_intervals.join(', ') || '–'})`
  $('task-id').textContent = status.task_id ?? '–'
  $('cancel').disabled = status.task_id === null
  if (lastState !== null && lastState !== status.state) log(`${agentId}: ${lastState} → ${status.state}`)
  lastState = status.state
}

/** The stream pushes the status while it is open; otherwise (ended, or the server gone) the page asks. */
async function refreshStatus () {
  try {
    showStatus(await client.getStatus(agentId))
  } catch (err) {
    showStatus(null)
    if (err.statusCode) log(`status: ${err.statusCode} ${err.message}`)
  }
}

function showConnection () {
  const reconnecting = readyState === CONNECTING && everOpen
  const texts = { [CONNECTING]: reconnecting ? 'disconnected: reconnecting…' : 'connecting…', [OPEN]: 'live', [CLOSED]: 'not streaming' }
  $('connection').textContent = texts[readyState]
  $('connection').dataset.state = readyState === OPEN ? 'open' : 'down'
  $('status').dataset.stale = String(readyState !== OPEN)
  // Whatever was shown came from a stream that is gone.
  if (reconnecting) showStatus(null)
}

async function act (label, action) {
  try {
    const status = await action()
    log(`${label}: ${status.state}${status.manual_hold ? ' (held)' : ''}`)
  } catch (err) {
    log(`${label} failed: ${err.statusCode ?? ''} ${err.message}`)
  }
  refreshStatus()
}

$('start').onclick = () => act('manual start', () => client.startMetricsStreaming(agentId, { interval_seconds: Number($('interval').value) }))
$('stop').onclick = () => act('manual stop', () => client.stopMetricsStreaming(agentId))
$('cancel').onclick = async () => {
  const { task_id: taskId } = await client.getStatus(agentId)
  if (taskId) await act(`cancel task ${taskId}`, () => client.cancelTask(taskId))
}
$('watch').onclick = watch
$('interval').onchange = watch
$('agent').onchange = () => {
  agentId = $('agent').value
  lastState = null
  history.replaceState(null, '', `?agent=${encodeURIComponent(agentId)}`)
  document.title = `${agentId} · fastify-agent-sse`
  watch()
}

const { agents, stop_delay_ms: stopDelayMs } = await (await fetch('/example/agents')).json()
$('agent').replaceChildren(...agents.map((id) => new Option(id)))
if (!agents.includes(agentId)) agentId = agents[0]
$('agent').value = agentId
document.title = `${agentId} · fastify-agent-sse`
log(`closing this tab stops ${agentId}'s stream ${stopDelayMs / 1000} s later, unless another viewer remains`)
watch()
setInterval(slideWindow, 1000)
setInterval(() => { if (readyState !== OPEN) refreshStatus() }, 2000)
