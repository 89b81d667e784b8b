import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { Agent, request } from 'undici'
import { envNumber, stress } from './helpers/run-budget.js'
import { startServer, waitFor } from './helpers/server.js'

// 10,000 cycles (about 75 s) with STRESS=1 (npm run test:stress, before a release); by default
// 1,000, which checks the same counts and leaks in a few seconds. SOAK_CYCLES=n runs n.
const CYCLES = envNumber('SOAK_CYCLES') ?? (stress ? 10_000 : 1_000)
const PARALLEL = 16
// 140 cycles/s here under coverage (800 without), 25/s on a badly overloaded one: margin for that.
t.setTimeout(60_000 + CYCLES * 60)

// A real collection before each memory reading, so RSS growth means retained memory, not garbage.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const activeHandles = () => (process as unknown as { _getActiveHandles (): unknown[] })._getActiveHandles().length

t.test(`soak: ${CYCLES} SSE connect/disconnect cycles against one agent, ${PARALLEL} at a time`, async (t) => {
  const { app, baseUrl, adapter, logs } = await startServer(t, { stopDelayMs: 1500, heartbeatIntervalMs: 1000 })
  logs.length = 0
  const url = `${baseUrl}/agents/soak/metrics/stream?interval_seconds=1`
  const client = new Agent({ connections: PARALLEL * 2 })
  t.teardown(() => client.destroy())

  const cycle = async () => {
    const response = await request(url, { dispatcher: client })
    // Wait for the first bytes (`retry:`), so the server has the client before it leaves.
    await new Promise<void>((resolve) => response.body.once('data', () => resolve()))
    response.body.destroy()
  }
  // Warm up, then take the baseline once everything has settled.
  for (let i = 0; i < 50; i++) await cycle()
  await waitFor(() => app.sseConnections().length === 0, 'warm-up clients to leave')
  await waitFor(() => adapter.liveTasks.size === 0, 'the warm-up stream to stop')
  const startsBefore = adapter.startCalls.length
  const stopsBefore = adapter.stopCalls.length
  gc()
  const baseline = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, handles: activeHandles(), closeListeners: app.server.listenerCount('connection') }

  let done = 0
  let errorsLogged = 0
  const started = Date.now()
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (done < CYCLES) {
      done++
      await cycle()
      // The test's log capture would otherwise be the thing that grows.
      if (logs.length > 1000) {
        errorsLogged += logs.filter((l) => l.level >= 50).length
        logs.length = 0
      }
    }
  }))
  const elapsed = Date.now() - started
  await waitFor(() => app.sseConnections().length === 0, 'every client to be gone', 10_000)
  t.equal(app.streamLifecycle.status('soak').subscribers, 0, 'no remaining clients')
  t.equal(adapter.startCalls.length - startsBefore, 1, 'exactly one start for the whole soak')
  await waitFor(() => adapter.liveTasks.size === 0, 'the stream to stop after the grace window', 10_000)
  t.equal(adapter.stopCalls.length - stopsBefore, 1, 'and exactly one stop')
  t.same(app.streamLifecycle.list(), [])

  await client.close()
  await waitFor(() => activeHandles() <= baseline.handles, `active handles back to baseline (${baseline.handles})`, 10_000)
  t.equal(app.server.listenerCount('connection'), baseline.closeListeners, 'server listener count back to baseline')
  gc()
  const memory = process.memoryUsage()
  const rssGrowthMb = (memory.rss - baseline.rss) / 1024 / 1024
  const heapGrowthMb = (memory.heapUsed - baseline.heap) / 1024 / 1024
  t.comment(`soak: ${CYCLES} cycles in ${elapsed} ms (${Math.round(CYCLES / (elapsed / 1000))} cycles/s); after GC heap growth ${heapGrowthMb.toFixed(2)} MB, RSS growth ${rssGrowthMb.toFixed(1)} MB (V8 keeps heap pages it grew into), handles ${baseline.handles} → ${activeHandles()}`)
  // Retained memory is the leak signal; RSS is reported and only guarded against the absurd.
  t.ok(heapGrowthMb < 8, `heap retained after GC grew ${heapGrowthMb.toFixed(2)} MB (< 8 MB)`)
  t.ok(rssGrowthMb < 256, `RSS growth ${rssGrowthMb.toFixed(1)} MB (< 256 MB)`)
  t.equal(errorsLogged + logs.filter((l) => l.level >= 50).length, 0, 'no error logged')
})
