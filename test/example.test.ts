import { once } from 'node:events'
import t from 'tap'
import { startExampleServer } from './helpers/example-process.js'
import { openSse, getJson, waitFor } from './helpers/server.js'

// The README's first command ends in `npm start`: run that example as a real process.
t.test('the example server streams a simulated agent and stops it after the grace window', async (t) => {
  const { child, origin, output } = await startExampleServer(t)
  const base = `${origin}/api`

  const client = await openSse(`${base}/agents/edge-2/metrics/stream?interval_seconds=1`)
  const event = await client.next((e) => e.event === 'metrics')
  t.match(JSON.parse(event.data), { agent_id: 'edge-2', cpu_percent: Number })
  t.match(output(), /agent edge-2: collecting started/)
  client.close()
  await waitFor(() => output().includes('agent edge-2: collecting stopped'), 'the agent to stop collecting', 10000)
  t.equal((await getJson(`${base}/agents/edge-2/status`)).body.streaming_active, false)
  t.equal((await getJson(`${base}/agents/nobody/status`)).statusCode, 404)
  const files = [
    ['/', /text\/html/], ['/agent.html', /text\/html/], ['/fleet.js', /javascript/], ['/tile.js', /javascript/], ['/agent.js', /javascript/],
    ['/live-source.js', /javascript/], ['/theme.js', /javascript/], ['/style.css', /text\/css/],
    ['/client.js', /javascript/], ['/vendor/uPlot.esm.js', /javascript/], ['/vendor/uPlot.min.css', /text\/css/]
  ] as const
  for (const [path, type] of files) {
    const response = await fetch(origin + path)
    t.equal(response.status, 200, `the dashboard serves ${path}`)
    t.match(response.headers.get('content-type'), type)
    await response.arrayBuffer()
  }
  const { agents, labels, stop_delay_ms: stopDelayMs } = await (await fetch(`${origin}/example/agents`)).json() as { agents: string[], labels: Record<string, string>, stop_delay_ms: number }
  t.same(agents, ['local', ...Array.from({ length: 24 }, (_, i) => `edge-${i + 1}`)], 'the dashboard lists "local" and 24 simulated agents')
  t.equal(stopDelayMs, 2000)
  t.same(Object.keys(labels), agents, 'a label per agent')
  t.ok(new Set(agents.slice(1).map((agentId) => labels[agentId])).size >= 10, 'at least ten shapes of load among the simulated agents')

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'exits cleanly on SIGTERM')
})

// examples/agents/load-shapes.js is plain JavaScript without declarations: imported by URL, typed here.
type LoadShape = (t: number, phase: number, seed: number) => { cpu: number, memory: number, online?: boolean }
const loadShapesModule = new URL('../examples/agents/load-shapes.js', import.meta.url).href

t.test('the simulated agents\' load shapes are repeatable, within 0–100 % and unlike one another', async (t) => {
  const { loadShapes } = await import(loadShapesModule) as { loadShapes: Record<string, LoadShape> }
  const start = 1_800_000_000
  const minute = (shape: LoadShape, phase = 0.3, seed = 5) => Array.from({ length: 600 }, (_, i) => shape(start + i * 0.5, phase, seed))
  const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length
  const cpuSeries = new Map<string, string>()
  for (const [name, shape] of Object.entries(loadShapes)) {
    const readings = minute(shape)
    t.same(minute(shape), readings, `${name}: the same time gives the same reading`)
    t.ok(readings.every(({ cpu, memory }) => cpu >= 0 && cpu <= 100 && memory >= 0 && memory <= 100), `${name}: percentages`)
    cpuSeries.set(name, JSON.stringify(readings.map(({ cpu }) => Math.round(cpu))))
  }
  t.equal(new Set(cpuSeries.values()).size, cpuSeries.size, 'no two shapes draw the same CPU curve')
  const cpu = (name: string) => minute(loadShapes[name]!).map((reading) => reading.cpu)
  t.ok(mean(cpu('idle')) < 5, 'idle is idle')
  t.ok(mean(cpu('saturated')) > 90, 'saturated is saturated')
  t.ok(Math.max(...cpu('spiky')) > 80 && mean(cpu('spiky')) < 30, 'spiky: short spikes over a quiet base')
  const offline = minute(loadShapes.flapping!).filter((reading) => reading.online === false).length / 600
  t.ok(offline > 0.25 && offline < 0.5, `flapping is away part of the time (${Math.round(offline * 100)} %)`)
})
