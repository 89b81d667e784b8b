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
  for (const [path, type] of [['/', /text\/html/], ['/app.js', /javascript/], ['/client.js', /javascript/], ['/vendor/uPlot.esm.js', /javascript/], ['/vendor/uPlot.min.css', /text\/css/]] as const) {
    const response = await fetch(origin + path)
    t.equal(response.status, 200, `the dashboard serves ${path}`)
    t.match(response.headers.get('content-type'), type)
    await response.arrayBuffer()
  }
  t.same(await (await fetch(`${origin}/example/agents`)).json(), { agents: ['local', 'edge-1', 'edge-2', 'edge-3'], stop_delay_ms: 2000 })

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'exits cleanly on SIGTERM')
})
