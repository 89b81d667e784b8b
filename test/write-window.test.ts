import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { startServer, waitFor } from './helpers/server.js'

// The write window's leading edge over real sockets: a sample after a quiet window leaves at once,
// samples inside a window leave together when it closes, and an end never waits for the window.
// The window is 1,000 ms (the largest allowed) so that "at once" and "after the window" are far apart
// even on a busy machine; nothing here measures speed.

const WINDOW_MS = 1000

/** A raw HTTP/1.1 SSE client: every socket read, with the time it arrived. */
async function rawStream (t: Test, baseUrl: string, path: string): Promise<{ reads: Array<{ at: number, text: string }>, text: () => string }> {
  const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.setEncoding('latin1')
  const reads: Array<{ at: number, text: string }> = []
  socket.on('data', (text: string) => reads.push({ at: Date.now(), text }))
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  const stream = { reads, text: () => reads.map((read) => read.text).join('') }
  await waitFor(() => /retry: \d+\n\n/.test(stream.text()), 'the head and the retry frame')
  return stream
}

const metricsCount = (text: string): number => (text.match(/event: metrics/g) ?? []).length
const nextMacrotask = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

t.test('a sample after a quiet window is written at once, not after the flush window', async (t) => {
  const { baseUrl, adapter } = await startServer(t, { flushIntervalMs: WINDOW_MS, heartbeatIntervalMs: 0 })
  const stream = await rawStream(t, baseUrl, '/agents/lone/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  const pushedAt = Date.now()
  adapter.push('lone', { n: 1 })
  await waitFor(() => metricsCount(stream.text()) === 1, 'the sample', WINDOW_MS * 5)
  const waitedMs = stream.reads.at(-1)!.at - pushedAt
  t.ok(waitedMs < WINDOW_MS * 0.8, `the sample came in ${waitedMs} ms, not after the ${WINDOW_MS} ms window`)
})

t.test('samples inside the window leave together when it closes, in order', async (t) => {
  const { baseUrl, adapter } = await startServer(t, { flushIntervalMs: WINDOW_MS, heartbeatIntervalMs: 0 })
  const stream = await rawStream(t, baseUrl, '/agents/burst/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('burst', { n: 1 })
  await waitFor(() => metricsCount(stream.text()) === 1, 'the first sample', WINDOW_MS * 5)
  const readsBefore = stream.reads.length
  const firstAt = stream.reads.at(-1)!.at
  // The first sample opened a window: these five, one per macrotask, wait for it.
  for (let n = 2; n <= 6; n++) {
    adapter.push('burst', { n })
    await nextMacrotask()
  }
  await waitFor(() => metricsCount(stream.text()) === 6, 'the five samples', WINDOW_MS * 5)
  const burst = stream.reads.slice(readsBefore)
  t.equal(burst.length, 1, `five samples in ${burst.length} socket read(s): one write when the window closed`)
  t.ok(burst[0]!.at - firstAt >= WINDOW_MS * 0.5, `they left ${burst[0]!.at - firstAt} ms after the first, when the window closed`)
  const ns = [...stream.text().matchAll(/"n":(\d+)/g)].map((match) => Number(match[1]))
  t.same(ns, [1, 2, 3, 4, 5, 6], 'in order')
})

t.test('an end does not wait for the window: the samples held and the end leave at once', async (t) => {
  const { baseUrl, adapter } = await startServer(t, { flushIntervalMs: WINDOW_MS, heartbeatIntervalMs: 0 })
  const stream = await rawStream(t, baseUrl, '/agents/ending/metrics/stream')
  await waitFor(() => adapter.liveTasks.size === 1, 'the stream')
  adapter.push('ending', { n: 1 })
  await waitFor(() => metricsCount(stream.text()) === 1, 'the first sample', WINDOW_MS * 5)
  const firstAt = stream.reads.at(-1)!.at
  adapter.push('ending', { n: 2 }) // held for the window the first one opened
  await nextMacrotask()
  adapter.endTask('ending', 'agent-offline')
  await waitFor(() => stream.text().includes('0\r\n\r\n'), 'the response to end', WINDOW_MS * 5)
  const endedAt = stream.reads.at(-1)!.at
  t.ok(endedAt - firstAt < WINDOW_MS * 0.8, `the end came ${endedAt - firstAt} ms after the first sample, not after the ${WINDOW_MS} ms window`)
  t.match(stream.text(), /"n":2\}\n\n[\s\S]*event: end\ndata: \{"reason":"agent-offline"\}\n\n[\s\S]*0\r\n\r\n$/, 'the held sample, then the end, then the last chunk')
})
