// One agent's tile on the fleet page: its id and label, its status, its latest numbers and a
// sparkline of its last minute. Everything the server or the agent sent is set as text or as a
// number in an attribute, never parsed as HTML.

const WINDOW_MS = 60_000
const SVG = 'http://www.w3.org/2000/svg'
const WIDTH = 120
const HEIGHT = 36

function element (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function svgElement (tag, attributes) {
  const node = document.createElementNS(SVG, tag)
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value)
  return node
}

const percent = (value) => (Number.isFinite(value) ? `${value.toFixed(value < 10 ? 1 : 0)} %` : '–')

export class AgentTile {
  constructor (agentId, label) {
    this.agentId = agentId
    /** { t, cpu, memory }, ascending by the agent's timestamp. */
    this.points = []
    /** The agent's clock minus ours at the last sample: the window ends at the agent's "now". */
    this.clockOffsetMs = 0
    this.lastArrival = 0
    this.intervalSeconds = 1
    this.status = null
    this.endedReason = null
    this.connected = false
    this.everConnected = false

    this.root = element('a', 'tile')
    this.root.href = `/agent.html?agent=${encodeURIComponent(agentId)}`
    this.root.dataset.testid = 'tile'
    this.root.dataset.agentId = agentId
    this.root.dataset.eventId = '0'
    this.root.dataset.points = '0'
    this.state = element('span', 'badge', '…')
    this.state.dataset.testid = 'tile-state'
    const head = element('div', 'tile-head')
    head.append(element('span', 'tile-id', agentId), this.state)

    this.svg = svgElement('svg', { class: 'spark', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: 'none', role: 'img' })
    this.svgTitle = svgElement('title', {})
    this.memoryLine = svgElement('path', { class: 'spark-memory', d: '' })
    this.cpuLine = svgElement('path', { class: 'spark-cpu', d: '' })
    this.svg.append(this.svgTitle, svgElement('line', { class: 'spark-mid', x1: 0, x2: WIDTH, y1: HEIGHT / 2, y2: HEIGHT / 2 }), this.memoryLine, this.cpuLine)

    this.cpu = element('span', 'value', '–')
    this.cpu.dataset.testid = 'tile-cpu'
    this.memory = element('span', 'value', '–')
    this.clients = element('span', 'value', '–')
    this.clients.dataset.testid = 'tile-clients'
    const foot = element('div', 'tile-foot')
    foot.append(metric('CPU', this.cpu, 'cpu'), metric('mem', this.memory, 'memory'))
    this.age = element('span', 'tile-age', 'no data yet')
    this.age.dataset.testid = 'tile-age'
    const meta = element('div', 'tile-meta')
    meta.append(metric('clients', this.clients), this.age)

    this.root.append(head, element('div', 'tile-label', label ?? ''), this.svg, foot, meta)
    this.setConnected(false)
  }

  sample (sample, eventId) {
    const now = Date.now()
    const parsed = Date.parse(sample.timestamp)
    const t = Number.isFinite(parsed) ? parsed : now
    this.clockOffsetMs = t - now
    this.lastArrival = now
    this.endedReason = null
    const point = { t, cpu: numberOrNull(sample.cpu_percent), memory: numberOrNull(sample.memory_percent) }
    // Ascending by time whatever the order of arrival (a resume, a restarted agent's clock).
    let index = this.points.length
    while (index > 0 && this.points[index - 1].t > t) index--
    if (index > 0 && this.points[index - 1].t === t) this.points[index - 1] = point
    else this.points.splice(index, 0, point)
    const oldest = this.points.at(-1).t - WINDOW_MS - 5000
    while (this.points.length > 0 && this.points[0].t < oldest) this.points.shift()

    this.cpu.textContent = percent(point.cpu)
    this.memory.textContent = percent(point.memory)
    this.root.dataset.eventId = String(eventId)
    this.root.dataset.points = String(this.points.length)
    this.svgTitle.textContent = `${this.agentId}: CPU ${percent(point.cpu)}, memory ${percent(point.memory)}`
    this.draw(now)
  }

  /** The agent's status from the stream: it is watched (again). */
  setStatus (status) {
    this.status = status
    this.endedReason = null
    if (status.interval_seconds) this.intervalSeconds = status.interval_seconds
    this.renderStatus()
  }

  /** The agent is over on this stream (cancelled, offline, failed, the server shutting down). */
  ended (reason) {
    this.endedReason = reason
    this.renderStatus()
    this.draw()
  }

  /** While the stream is not open nothing on the tile is current: it says so. */
  setConnected (connected) {
    this.connected = connected
    if (connected) this.everConnected = true
    else this.status = null
    this.renderStatus()
    this.draw()
  }

  /** Slides the window and ages the tile; runs every second and on each sample. */
  draw (now = Date.now()) {
    const end = now + this.clockOffsetMs
    const start = end - WINDOW_MS
    // A pause longer than a few intervals is a gap in the line, not a slope across it.
    const gapMs = Math.max(3000, 2.5 * this.intervalSeconds * 1000)
    this.cpuLine.setAttribute('d', path(this.points, 'cpu', start, gapMs))
    this.memoryLine.setAttribute('d', path(this.points, 'memory', start, gapMs))

    const silentMs = now - this.lastArrival
    const silent = this.lastArrival === 0 || silentMs > Math.max(5000, 3 * this.intervalSeconds * 1000)
    const live = this.connected && this.endedReason === null && !silent
    this.root.dataset.stale = String(!live)
    let age = 'live'
    if (this.endedReason !== null) age = `ended: ${this.endedReason}`
    else if (!this.connected && this.everConnected) age = 'disconnected'
    else if (this.lastArrival === 0) age = 'no data yet'
    else if (silent) age = `no data for ${formatSeconds(silentMs)}`
    this.age.textContent = age
  }

  renderStatus () {
    const status = this.status
    let text = 'unknown'
    if (this.endedReason !== null) text = 'ended'
    else if (status !== null) text = status.state
    else if (this.connected || !this.everConnected) text = '…'
    this.state.textContent = text
    this.root.dataset.state = this.endedReason !== null ? 'ended' : status?.state ?? (text === '…' ? 'pending' : 'unknown')
    this.clients.textContent = status === null ? '–' : String(status.sse_clients)
    this.root.title = status === null
      ? `${this.agentId}: status not known now`
      : `${this.agentId}: ${status.state}, streaming_active ${status.streaming_active}, ${status.sse_clients} SSE client(s)${status.manual_hold ? ', held' : ''}`
  }
}

function metric (name, value, series) {
  const wrapper = element('span', 'metric')
  const label = element('span', 'label', name)
  if (series) label.dataset.series = series
  wrapper.append(label, ' ', value)
  return wrapper
}

function numberOrNull (value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

function path (points, key, start, gapMs) {
  let d = ''
  let previous = null
  for (const point of points) {
    const value = point[key]
    if (value === null || point.t < start - gapMs) {
      previous = null
      continue
    }
    const x = ((point.t - start) / WINDOW_MS) * WIDTH
    const y = HEIGHT - 1 - (Math.min(100, Math.max(0, value)) / 100) * (HEIGHT - 2)
    const move = previous === null || point.t - previous.t > gapMs
    d += `${move ? 'M' : 'L'}${x.toFixed(1)} ${y.toFixed(1)}`
    previous = point
  }
  return d
}

function formatSeconds (ms) {
  const seconds = Math.round(ms / 1000)
  return seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} min`
}
