// RedisClock reckons Redis's clock from the TIME every script returns. A reply is handled late (its way back, and
// whatever the event loop did first), so a reading is never ahead of Redis's clock and often behind it: the clock
// keeps the best recent reading. Before 2026-11-30 the store kept the last one, and an instance that handled one
// reply a second late took every demand change of the next renewal period for one "from the future" and dropped it.
import t from 'tap'
import { RedisClock } from '../lib/redis/redis-clock.js'

const leaseMs = 3000

function clockAt (start: number) {
  const monotonic = { now: start }
  return { monotonic, clock: new RedisClock(leaseMs, () => monotonic.now) }
}

t.test('before any reply it is this machine\'s clock', async (t) => {
  const { clock } = clockAt(0)
  const before = Date.now()
  const now = clock.now()
  t.ok(now >= before && now <= Date.now(), `${now} is Date.now()`)
})

t.test('a reply handled late does not set the clock back', async (t) => {
  const { monotonic, clock } = clockAt(1000)
  const redisAt1000 = 5_000_000
  clock.observe(redisAt1000) // handled at once
  monotonic.now = 3000
  // Written by Redis at monotonic 2000, handled 1 s later (a busy event loop).
  clock.observe(redisAt1000 + 1000)
  t.equal(clock.now(), redisAt1000 + 2000, 'still the punctual reading\'s clock')
  monotonic.now = 3500
  clock.observe(redisAt1000 + 2500) // punctual again
  t.equal(clock.now(), redisAt1000 + 2500)
})

t.test('a late reading alone is used until a better one comes', async (t) => {
  const { monotonic, clock } = clockAt(800)
  clock.observe(10_000) // written by Redis at monotonic 0, handled at 800
  monotonic.now = 1000
  t.equal(clock.now(), 10_200, '800 ms early: the only reading there is')
})

t.test('readings expire after two spans, so that a small step back of Redis\'s clock is followed', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000)
  monotonic.now = 5_000
  t.equal(clock.now(), 105_000)
  // Redis's clock steps back by 2 s (less than a lease: it could be a reply handled late); every reading says so.
  monotonic.now = 12_000
  clock.observe(110_000)
  t.equal(clock.now(), 112_000, 'the previous span\'s reading still counts')
  monotonic.now = 23_000
  clock.observe(121_000)
  t.equal(clock.now(), 121_000, 'two spans later only the new readings count')
})

t.test('a step back longer than a lease is followed at once (another Redis answers)', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000)
  monotonic.now = 1_000
  clock.observe(41_000) // 60 s behind
  t.equal(clock.now(), 41_000)
  monotonic.now = 2_000
  t.equal(clock.now(), 42_000)
})

t.test('a step back longer than a lease is followed at once, measured from the best of both spans', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000)
  monotonic.now = 10_000
  clock.observe(108_000) // 2 s late: it opens a new span, the previous one's reading still counts
  t.equal(clock.now(), 110_000)
  monotonic.now = 11_000
  clock.observe(106_000) // 5 s behind the best reading: Redis's clock went back
  t.equal(clock.now(), 106_000)
})
