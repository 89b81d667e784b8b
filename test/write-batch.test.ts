import t, { type Test } from 'tap'
import { WriteBatch, type BatchedWriter } from '../lib/sse/write-batch.js'

// The write schedule on its own: which connection is written in which macrotask, and when by the
// batch's clock. (That every client gets every frame through real sockets is sse.test.ts's job.)

interface Clock { turn: number, ms: number }

/** A connection's writer as the batch sees it: it records the turn and the clock of each write. */
class RecordingWriter implements BatchedWriter {
  readonly writes: Array<{ turn: number, at: number }> = []
  constructor (private readonly clock: Clock, private readonly msPerWrite = 0) {}
  flush (): void {
    this.writes.push({ turn: this.clock.turn, at: this.clock.ms })
    this.clock.ms += this.msPerWrite
  }
}

/** Counts macrotasks (turns of the event loop) while the test runs. */
function turning (t: Test, clock: Clock): void {
  let on = true
  const tick = (): void => { clock.turn++; if (on) setImmediate(tick) }
  setImmediate(tick)
  t.teardown(() => { on = false })
}

const endOfTick = async (): Promise<void> => await new Promise((resolve) => process.nextTick(resolve))

async function waitUntil (condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('1,200 connections written at once go 512 per macrotask, in order, and a write scheduled meanwhile waits its turn', async (t) => {
  const clock = { turn: 0, ms: 0 }
  turning(t, clock)
  const batch = new WriteBatch(0, { now: () => clock.ms })
  const first = Array.from({ length: 1200 }, () => new RecordingWriter(clock))
  for (const writer of first) batch.schedule(writer)
  // Written at the end of this tick: the first slice goes at once, the rest on later turns.
  await endOfTick()
  t.equal(first.filter((writer) => writer.writes.length === 1).length, 512, 'the first slice is written at the end of the tick')
  const second = Array.from({ length: 10 }, () => new RecordingWriter(clock))
  for (const writer of second) batch.schedule(writer)
  await waitUntil(() => second.every((writer) => writer.writes.length === 1), 'the second write')

  const turns = first.map((writer) => writer.writes[0]!.turn)
  t.ok(first.every((writer) => writer.writes.length === 1), 'every connection written once')
  t.same(turns, [...turns].sort((a, b) => a - b), 'in the order they were scheduled')
  const perTurn = new Map<number, number>()
  for (const turn of turns) perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1)
  t.same([...perTurn.values()], [512, 512, 176], 'three slices, each in its own macrotask')
  t.ok(second.every((writer) => writer.writes[0]!.turn >= turns.at(-1)!), 'the next write comes after the first one ends')
})

t.test('a few connections are written at once, at the end of the tick', async (t) => {
  const clock = { turn: 0, ms: 0 }
  const batch = new WriteBatch(0, { now: () => clock.ms })
  const writers = Array.from({ length: 100 }, () => new RecordingWriter(clock))
  for (const writer of writers) batch.schedule(writer)
  t.ok(writers.every((writer) => writer.writes.length === 0), 'not inside the tick')
  await endOfTick()
  t.ok(writers.every((writer) => writer.writes.length === 1))
})

t.test('leading edge: with no window open frames leave at the end of the tick and open one; frames inside it wait for it to close, together', async (t) => {
  const clock = { turn: 0, ms: 1000 }
  const batch = new WriteBatch(200, { now: () => clock.ms })
  const [a, b, c] = [new RecordingWriter(clock), new RecordingWriter(clock), new RecordingWriter(clock)]
  batch.schedule(a)
  batch.schedule(b)
  await endOfTick()
  t.same([a.writes.length, b.writes.length], [1, 1], 'the first frames do not wait: they leave at the end of their tick, together')

  // 50 ms later by the batch's clock: inside the window (150 ms from the write's start), so they wait.
  clock.ms = 1050
  batch.schedule(a)
  clock.ms = 1060
  batch.schedule(c)
  await endOfTick()
  t.same([a.writes.length, c.writes.length], [1, 0], 'frames inside the window are not written at the end of the tick')
  clock.ms = 1150
  await waitUntil(() => a.writes.length === 2 && c.writes.length === 1, 'the window to close (a real timer of about 100 ms)')
  t.equal(a.writes[1]!.turn, c.writes[0]!.turn, 'written together when it closed')

  // Quiet for a window: the next frame leads again.
  clock.ms = 2000
  batch.schedule(b)
  await endOfTick()
  t.equal(b.writes.length, 2, 'after a quiet window a frame is written at the end of its tick')
})

t.test('a busy hub\'s long write leaves half a window after it ends before the next one (writing cannot take the loop over)', async (t) => {
  // Each write takes 1 ms by the batch's clock: 300 connections take 300 ms, three windows of 100 ms.
  const clock = { turn: 0, ms: 0 }
  const batch = new WriteBatch(100, { now: () => clock.ms })
  const first = new RecordingWriter(clock)
  batch.schedule(first)
  await endOfTick()
  // A busy hub: frames wait most of the (short, 75 ms) window the write at 0 opened.
  clock.ms = 10
  const writers = Array.from({ length: 300 }, () => new RecordingWriter(clock, 1))
  for (const writer of writers) batch.schedule(writer)
  clock.ms = 75
  await waitUntil(() => writers.every((writer) => writer.writes.length === 1), 'the window to close')
  t.equal(clock.ms, 375, 'the write ended at 375 ms')
  clock.ms = 410
  batch.schedule(first)
  await endOfTick()
  t.equal(first.writes.length, 1, '35 ms after it ended, a frame waits (a whole window after the last one would have ended at 175 ms)')
  clock.ms = 425
  await waitUntil(() => first.writes.length === 2, 'the next window to close, half a window after the write')
  clock.ms = 1000
  batch.schedule(writers[0]!)
  await endOfTick()
  t.equal(writers[0]!.writes.length, 2, 'after a quiet window, a frame leads')
})

t.test('flushIntervalMs 0: every write leaves at the end of its tick', async (t) => {
  const clock = { turn: 0, ms: 0 }
  const batch = new WriteBatch(0, { now: () => clock.ms })
  const writer = new RecordingWriter(clock)
  for (let i = 0; i < 3; i++) {
    batch.schedule(writer)
    await endOfTick()
    t.equal(writer.writes.length, i + 1)
  }
})

t.test('a new stream leaves at the end of the tick whatever the window', async (t) => {
  const clock = { turn: 0, ms: 0 }
  const batch = new WriteBatch(10_000, { now: () => clock.ms })
  const [open, busy] = [new RecordingWriter(clock), new RecordingWriter(clock)]
  batch.schedule(busy)
  await endOfTick()
  clock.ms = 1
  batch.schedule(busy)
  batch.open(open)
  await endOfTick()
  t.same([open.writes.length, busy.writes.length], [1, 1], 'the new stream is written; the busy connection waits for its 10 s window')
})

t.test('a window that closes on frames which waited most of it (a busy hub) is followed by a whole one; on frames that came late in it (samples at the window\'s pace), by a short one', async (t) => {
  for (const { firstFrameAt, nextWindowEnd } of [{ firstFrameAt: 10, nextWindowEnd: 175 }, { firstFrameAt: 70, nextWindowEnd: 150 }]) {
    const clock = { turn: 0, ms: 0 }
    const batch = new WriteBatch(100, { now: () => clock.ms })
    const writer = new RecordingWriter(clock)
    batch.schedule(writer)
    await endOfTick()
    // The write at 0 opened a short window (75 ms): the next frame waits for it.
    clock.ms = firstFrameAt
    batch.schedule(writer)
    clock.ms = 75
    await waitUntil(() => writer.writes.length === 2, 'the window to close')
    clock.ms = nextWindowEnd - 1
    batch.schedule(writer)
    await endOfTick()
    t.equal(writer.writes.length, 2, `first frame at ${firstFrameAt} ms: a frame at ${clock.ms} ms still waits`)
    clock.ms = nextWindowEnd
    await waitUntil(() => writer.writes.length === 3, 'the next window to close')
    t.equal(writer.writes[2]!.at, nextWindowEnd, `the next window closed at ${nextWindowEnd} ms`)
  }
})
