import t from 'tap'
import { WriteBatch } from '../lib/sse/writer.js'

// The flush schedule of a write window, on its own: which socket is written in which macrotask.
// (That every client gets every frame through real sockets is sse.test.ts's job.)

/** A socket writer as the batch sees it: it only records when it is uncorked. */
class RecordingWriter {
  corked = true
  readonly uncorks: number[] = []
  constructor (private readonly clock: { turn: number }) {}
  uncork (): void {
    if (!this.corked) return
    this.corked = false
    this.uncorks.push(this.clock.turn)
  }
}

t.test('a window of 1,200 sockets is written 512 per macrotask, in order, and a window opened meanwhile waits its turn', async (t) => {
  const clock = { turn: 0 }
  let turning = true
  const tick = (): void => { clock.turn++; if (turning) setImmediate(tick) }
  setImmediate(tick)
  t.teardown(() => { turning = false })

  const batch = new WriteBatch(0)
  const first = Array.from({ length: 1200 }, () => new RecordingWriter(clock))
  for (const writer of first) batch.add(writer as never)
  // Closes at the end of this tick: the first slice goes at once, the rest on later turns.
  await new Promise((resolve) => process.nextTick(resolve))
  t.equal(first.filter((writer) => writer.uncorks.length === 1).length, 512, 'the first slice is written when the window closes')
  const second = Array.from({ length: 10 }, () => new RecordingWriter(clock))
  for (const writer of second) batch.add(writer as never)
  await new Promise((resolve) => setTimeout(resolve, 50))

  const turns = first.map((writer) => writer.uncorks[0]!)
  t.ok(first.every((writer) => writer.uncorks.length === 1), 'every socket of the window written once')
  t.same(turns, [...turns].sort((a, b) => a - b), 'in the order they joined')
  const perTurn = new Map<number, number>()
  for (const turn of turns) perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1)
  t.same([...perTurn.values()], [512, 512, 176], 'three slices, each in its own macrotask')
  t.ok(second.every((writer) => writer.uncorks.length === 1 && writer.uncorks[0]! >= turns.at(-1)!), 'the next window is written after the first one ends')
})

t.test('a small window is written at once, in the closing tick', async (t) => {
  const clock = { turn: 0 }
  const batch = new WriteBatch(0)
  const writers = Array.from({ length: 100 }, () => new RecordingWriter(clock))
  for (const writer of writers) batch.add(writer as never)
  await new Promise((resolve) => process.nextTick(resolve))
  t.ok(writers.every((writer) => writer.uncorks.length === 1))
})
