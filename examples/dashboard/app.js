// The dashboard: one EventSource for the watched agent (through the package's typed
// client), live charts with uPlot, the agent's status, manual control and a lifecycle log.
import { AgentStreamClient } from '/client.js'
import uPlot from '/vendor/uPlot.esm.js'

const client = new AgentStreamClient({ baseUrl: '/api' })
const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const WINDOW = 120 // points kept per chart

let agentId = params.get('agent') ?? 'local'
let source = null
let lastState = null
const series = { time: [], cpu: [], memory: [], load: [] }

const usageChart = new uPlot(chartOptions([
  { label: 'CPU %', stroke: '#2f7de1', width: 2 },
  { label: 'Memory %', stroke: '#d9822b', width: 2 }
], { range: [0, 100] }), [[], [], []], $('chart-usage'))
const loadChart = new uPlot(chartOptions([{ label: 'Load 1m', stroke: '#1f9d55', width: 2 }]), [[], []], $('chart-load'))

function chartOptions (lines, scale = {}) {
  return {
    width: chartWidth(),
    height: 220,
    scales: { x: { time: true }, y: scale.range ? { range: scale.range } : {} },
    series: [{}, ...lines],
    legend: { live: false }
  }
}

function chartWidth () {
  return Math.max(280, ($('chart-usage').clientWidth || 520) - 8)
}
addEventListener('resize', () => {
  for (const chart of [usageChart, loadChart]) chart.setSize({ width: chartWidth(), height: 220 })
})

function log (message) {
  const item = document.createElement('li')
  item.textContent = `${new Date().toLocaleTimeString()}  ${message}`
  $('log').prepend(item)
  while ($('log').children.length > 200) $('log').lastChild.remove()
}

function render (sample, eventId) {
  const t = Date.parse(sample.timestamp) / 1000 || Date.now() / 1000
  series.time.push(t)
  series.cpu.push(sample.cpu_percent ?? null)
  series.memory.push(sample.memory_percent ?? null)
  series.load.push(sample.load_1m ?? null)
  for (const values of Object.values(series)) if (values.length > WINDOW) values.shift()
  usageChart.setData([series.time, series.cpu, series.memory])
  loadChart.setData([series.time, series.load])
  // Agent data is shown as text, never parsed as HTML: a key or value may hold markup.
  $('latest').replaceChildren(...Object.entries(sample).map(([key, value]) => tableRow(key, Array.isArray(value) ? value.join(', ') : String(value))))
  $('last-event-id').textContent = String(eventId)
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
  source?.close()
  for (const values of Object.values(series)) values.length = 0
  const intervalSeconds = Number($('interval').value)
  $('watch').hidden = true
  log(`watching ${agentId} every ${intervalSeconds}s`)
  source = client.streamMetrics(agentId, intervalSeconds, {
    onMetrics: render,
    onGap: ({ missed }) => log(`resumed; ${missed} samples were no longer held`),
    onEnd (reason) {
      log(`stream ended: ${reason}`)
      $('watch').hidden = false
    },
    onServerError: (err) => log(`agent stream failed: ${err.message} (retrying)`)
  })
}

async function refreshStatus () {
  try {
    const status = await client.getStatus(agentId)
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
  } catch (err) {
    log(`status: ${err.message}`)
  }
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
  watch()
  refreshStatus()
}

const { agents, stop_delay_ms: stopDelayMs } = await (await fetch('/example/agents')).json()
$('agent').replaceChildren(...agents.map((id) => new Option(id)))
if (!agents.includes(agentId)) agentId = agents[0]
$('agent').value = agentId
log(`closing this tab stops ${agentId}'s stream ${stopDelayMs / 1000} s later, unless another viewer remains`)
watch()
refreshStatus()
setInterval(refreshStatus, 1000)
