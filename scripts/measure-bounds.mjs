// Measures the bounds the "Hardening" issue asked for, on the built package (npm run build first):
//  1. 50,000 SSE connects to distinct random agent ids (no agentExists): heap and RSS after, histories kept.
//  2. GET /streams at 20,000 active agents: page size, time per request, and an unrelated status request's
//     latency while 10 list requests run at once.
// Usage: node --expose-gc scripts/measure-bounds.mjs [connects=50000] [agents=20000]
import Fastify from 'fastify'
import { request, Agent } from 'undici'
import agentSse from '../dist/esm/index.js'

const connects = Number(process.argv[2] ?? 50000)
const agents = Number(process.argv[3] ?? 20000)
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

let task = 0
const adapter = {
  async startMetricsStreaming (agentId, _options, sink) {
    setImmediate(() => sink.push({ agent: agentId, cpu: 1.5, padding: 'x'.repeat(512) }))
    return { taskId: `t${++task}` }
  },
  async stopMetricsStreaming () {},
  async getCurrentMetrics () { return {} }
}

const app = Fastify()
await app.register(agentSse, { adapter, stopDelayMs: 0, maxClients: 0, maxHolds: 0, heartbeatIntervalMs: 0 })
await app.listen({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${app.server.address().port}`
const dispatcher = new Agent({ connections: 64, pipelining: 0 })

globalThis.gc?.()
const before = process.memoryUsage()
const started = Date.now()
for (let done = 0; done < connects;) {
  const batch = Math.min(64, connects - done)
  await Promise.all(Array.from({ length: batch }, async (_, i) => {
    const id = `r${(done + i).toString(36)}x${Math.random().toString(36).slice(2, 8)}`
    const response = await request(`${base}/agents/${id}/metrics/stream?interval_seconds=1`, { dispatcher })
    // Wait for the first sample, then leave (the stream stops at once: stopDelayMs 0).
    await new Promise((resolve) => {
      response.body.on('data', (chunk) => { if (String(chunk).includes('event: metrics')) resolve() })
      response.body.on('end', resolve)
    })
    response.body.destroy()
  }))
  done += batch
}
await new Promise((resolve) => setTimeout(resolve, 500))
globalThis.gc?.()
const after = process.memoryUsage()
console.log(`${connects} connects to distinct agents in ${((Date.now() - started) / 1000).toFixed(1)} s: heap ${mb(before.heapUsed)} → ${mb(after.heapUsed)}, RSS ${mb(before.rss)} → ${mb(after.rss)}, streams left ${app.streamLifecycle.list().length}`)

await Promise.all(Array.from({ length: agents }, (_, i) => app.streamLifecycle.hold(`agent-${String(i).padStart(6, '0')}`, { intervalSeconds: 5 })))
const timed = async (path) => {
  const t0 = performance.now()
  const response = await request(`${base}${path}`, { dispatcher })
  const text = await response.body.text()
  return { ms: performance.now() - t0, bytes: text.length }
}
await timed('/streams') // the first request compiles the route's serializer
const median = async (path) => {
  const runs = []
  for (let i = 0; i < 9; i++) runs.push(await timed(path))
  runs.sort((a, b) => a.ms - b.ms)
  return runs[4]
}
const single = await median('/streams')
const big = await median('/streams?limit=1000')
const statusDuring = async (path) => (await Promise.all([...Array.from({ length: 10 }, () => timed(path)), timed('/agents/agent-000001/status')])).at(-1).ms.toFixed(1)
console.log(`GET /streams at ${agents} active agents (medians of 9): default page of 100, ${single.bytes} B in ${single.ms.toFixed(1)} ms; limit=1000, ${big.bytes} B in ${big.ms.toFixed(1)} ms`)
console.log(`an unrelated status request while 10 list requests run at once: ${await statusDuring('/streams')} ms (default pages), ${await statusDuring('/streams?limit=1000')} ms (limit=1000)`)
await dispatcher.close()
await app.close()
