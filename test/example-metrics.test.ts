import t from 'tap'
import { startExampleServer } from './helpers/example-process.js'
import { openSse, waitFor } from './helpers/server.js'

/** One scrape of the example's GET /metrics: every sample line, by series (name and labels as printed). */
async function scrape (origin: string) {
  const response = await fetch(`${origin}/metrics`)
  const text = await response.text()
  const series = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    series.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return { status: response.status, contentType: response.headers.get('content-type'), text, value: (name: string) => series.get(name) }
}

const startsCount = 'agent_sse_adapter_call_duration_seconds_count{operation="startMetricsStreaming",outcome="ok"}'
const stopsCount = 'agent_sse_adapter_call_duration_seconds_count{operation="stopMetricsStreaming",outcome="ok"}'

t.test('the example server\'s /metrics counts clients, streams and adapter calls from the diagnostics channels', async (t) => {
  const { origin, output } = await startExampleServer(t, { STOP_DELAY_MS: '300' })
  const idle = await scrape(origin)
  t.equal(idle.status, 200)
  t.match(idle.contentType, /^text\/plain; version=0\.0\.4/, 'Prometheus text format')
  t.equal(idle.value('agent_sse_clients'), 0)
  t.equal(idle.value('agent_sse_live_streams'), 0)
  t.equal(idle.value('agent_sse_stream_starts_total'), 0)
  t.equal(idle.value('agent_sse_stream_failures_total{phase="start"}'), 0, 'known label values are there from the start')

  const single = await openSse(`${origin}/api/agents/edge-3/metrics/stream?interval_seconds=1`)
  const fleet = await openSse(`${origin}/api/metrics/stream?agents=edge-4,edge-5&interval_seconds=1`)
  await single.next((event) => event.event === 'metrics', 'a sample on the single-agent stream')
  await fleet.next((event) => event.event === 'metrics', 'a sample on the fleet stream')
  let live = await scrape(origin)
  await waitFor(async () => {
    live = await scrape(origin)
    return live.value('agent_sse_live_streams') === 3
  }, 'three live streams on /metrics', 10_000)
  t.equal(live.value('agent_sse_clients'), 2, 'two SSE connections')
  t.equal(live.value('agent_sse_fleet_connections'), 1, 'one of them a fleet connection')
  t.ok(live.value('agent_sse_stream_starts_total')! >= 3, 'the starts are counted')
  t.ok(live.value(startsCount)! >= 3, 'each start is in the adapter latency histogram')
  t.ok(live.value('agent_sse_adapter_call_duration_seconds_bucket{le="+Inf",operation="startMetricsStreaming",outcome="ok"}')! >= 3)
  t.equal(live.value('agent_sse_conflated_frames_total'), 0)
  t.equal(live.value('agent_sse_stall_disconnects_total'), 0)

  single.close()
  fleet.close()
  let after = live
  await waitFor(async () => {
    after = await scrape(origin)
    return after.value('agent_sse_live_streams') === 0
  }, 'every stream to stop after the grace window', 15_000)
  t.equal(after.value('agent_sse_clients'), 0)
  t.equal(after.value('agent_sse_fleet_connections'), 0)
  t.ok(after.value('agent_sse_stream_stops_total{reason="no-demand"}')! >= 3, 'the stops are counted, with their reason')
  t.ok(after.value(stopsCount)! >= 3, 'each stop is in the adapter latency histogram')
  t.equal(after.value('agent_sse_stream_failures_total{phase="stream"}'), 0)

  t.notMatch(output(), /incoming request|request completed/, 'no log line per request (the scrapes and the dashboard\'s polls)')
  t.match(output(), /INFO agent edge-3: collecting stopped/, 'the lifecycle lines, readable')
  t.notMatch(output(), /^\{"level"/m, 'no JSON lines')
})
