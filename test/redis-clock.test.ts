// RedisClock reckons Redis's clock from the TIME the scripts return. A reply is handled late (its way back, and
// whatever the event loop did first), so a reading is never ahead of Redis's clock and often behind it: the clock
// keeps the best recent reading. Before 2026-11-30 the store kept the last one, and an instance that handled one
// reply a second late took every demand change of the next renewal period for one "from the future" and dropped it.
import t from 'tap'
import { RedisClock } from '../lib/redis/redis-clock.js'

function clockAt (start: number) {
  const monotonic = { now: start }
  return { monotonic, clock: new RedisClock(() => monotonic.now) }
}

t.test('before any reply it is this machine\'s clock', async (t) => {
  const { clock } = clockAt(0)
  const before = Date.now()
  const now = clock.now()
  t.ok(now >= before && now <= Date.now(), `${now} is Date.now()`)
})

t.test('a reply handled late does not set the clock back', async (t) => {
  const { monotonic, clock } = clockAt(1000)
  clock.observe(5_000_000, 1000) // sent and handled at once, at monotonic 1000
  monotonic.now = 3000
  clock.observe(5_001_000, 2000) // sent and written at monotonic 2000, handled 1 s later (a busy event loop)
  t.equal(clock.now(), 5_002_000, 'still the punctual reading\'s clock')
  monotonic.now = 3500
  clock.observe(5_002_500, 3500)
  t.equal(clock.now(), 5_002_500)
})

t.test('a reply handled 5 s late is a late reply, not a step of Redis\'s clock', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000, 0)
  monotonic.now = 6000
  clock.observe(101_000, 1000) // sent at monotonic 1000, handled at 6000
  t.equal(clock.now(), 106_000)
})

t.test('a late reading alone is used until a better one comes', async (t) => {
  const { monotonic, clock } = clockAt(800)
  clock.observe(10_000, 0) // sent and written at monotonic 0, handled at 800
  monotonic.now = 1000
  t.equal(clock.now(), 10_200, '800 ms early: the only reading there is')
})

t.test('a step back of Redis\'s clock is followed at once (another Redis answers)', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000, 0)
  monotonic.now = 1000
  clock.observe(41_000, 1000) // 60 s behind, even counted from when the call was sent
  t.equal(clock.now(), 41_000)
  monotonic.now = 2000
  t.equal(clock.now(), 42_000)
})

t.test('a step back is measured from the best reading of both spans', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000, 0)
  monotonic.now = 10_000
  clock.observe(108_000, 8000) // 2 s late: it opens a new span, the previous one's reading still counts
  t.equal(clock.now(), 110_000)
  monotonic.now = 11_000
  clock.observe(106_000, 11_000) // 5 s behind the best reading: Redis's clock went back
  t.equal(clock.now(), 106_000)
})

t.test('a step back shorter than a second is followed after two spans', async (t) => {
  const { monotonic, clock } = clockAt(0)
  clock.observe(100_000, 0)
  monotonic.now = 12_000
  clock.observe(111_500, 12_000) // Redis's clock went back 500 ms
  t.equal(clock.now(), 112_000, 'the previous span\'s reading still counts')
  monotonic.now = 23_000
  clock.observe(122_500, 23_000)
  t.equal(clock.now(), 122_500, 'two spans later only the new readings count')
})
