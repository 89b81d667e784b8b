import t from 'tap'
import type { StreamLifecycle } from '../lib/lifecycle/stream-lifecycle.js'
import { streamStatus } from '../lib/lifecycle/stream-status.js'
import type { StreamStatus } from '../lib/lifecycle/types.js'
import type { FleetConnection } from '../lib/routes/fleet-connection.js'
import { FleetStatusFeed, sameStatus } from '../lib/routes/fleet-status.js'
import { FleetFrames } from '../lib/routes/sse-frames.js'

// The status feed's tick on its own: it skips serialising a status whose fields did not change, and
// never misses a change. (The status events through real sockets are fleet.test.ts's job.)

function active (agentId: string, subscribers: number, intervals: number[]): StreamStatus {
  return streamStatus(agentId, 'active', { subscribers, manualHold: false, requestedIntervals: intervals }, { taskId: 't1', intervalSeconds: 1, startedAt: '2026-11-30T00:00:00.000Z' })
}

t.test('sameStatus: true only for statuses that serialise alike, field by field', async (t) => {
  t.ok(sameStatus(active('a', 2, [1, 5]), active('a', 2, [5, 1])), 'equal fields, equal sorted intervals')
  t.notOk(sameStatus(active('a', 2, [1, 5]), active('a', 3, [1, 5, 5])), 'a subscriber more')
  t.notOk(sameStatus(active('a', 2, [1, 5]), active('a', 2, [1, 10])), 'an interval changed')
  t.notOk(sameStatus(active('a', 0, []), streamStatus('a', 'idle', { subscribers: 0, manualHold: false, requestedIntervals: [] }, null)), 'the state changed')
  const withOwner = streamStatus('a', 'active', { subscribers: 1, manualHold: false, requestedIntervals: [1] }, null, 'instance-1')
  t.notOk(sameStatus(withOwner, active('a', 1, [1])), 'a key more (owner)')
  t.notOk(sameStatus(active('a', 1, [1]), withOwner), 'a key less')
  const status = active('a', 1, [1])
  t.notOk(sameStatus(status, status), 'the same object: it may have changed in place')
  const shared = { ...status }
  t.notOk(sameStatus(status, shared), 'the same intervals array in both: it may have changed in place')
  const nested = { ...active('a', 1, [1]), extra: { x: 1 } } as unknown as StreamStatus
  t.notOk(sameStatus(nested, { ...active('a', 1, [1]), extra: { x: 1 } } as unknown as StreamStatus), 'a nested object is never taken as unchanged')
})

/** A lifecycle whose status is whatever the test set, and a connection that records what it is sent. */
function feedWith (statuses: Map<string, StreamStatus>): { feed: FleetStatusFeed, sent: string[], tick: () => void } {
  const lifecycle = { status: (agentId: string) => statuses.get(agentId)! } as unknown as StreamLifecycle
  const sent: string[] = []
  const connection = { status: (_agentId: string, json: string) => { sent.push(json) } } as unknown as FleetConnection
  const feed = new FleetStatusFeed(lifecycle, new FleetFrames())
  feed.watch('a', connection)
  const tick = (): void => (feed as unknown as { tick: () => void }).tick()
  return { feed, sent, tick }
}

t.test('the tick sends a status once per change, including a status object changed in place', async (t) => {
  const statuses = new Map([['a', active('a', 1, [1])]])
  const { feed, sent, tick } = feedWith(statuses)
  t.teardown(() => feed.close())
  t.equal(sent.length, 1, 'the status on watch')
  tick()
  t.equal(sent.length, 2, 'the first tick offers it again (the connection drops repeats)')
  tick()
  statuses.set('a', active('a', 1, [1]))
  tick()
  t.equal(sent.length, 2, 'unchanged fields in new objects: nothing sent')
  statuses.set('a', active('a', 2, [1, 1]))
  tick()
  t.equal(sent.length, 3, 'a change is sent')
  t.match(JSON.parse(sent[2]!), { sse_clients: 2, requested_intervals: [1, 1] })
  // A coordinator that keeps one object and updates it in place.
  const inPlace = active('a', 2, [1, 1])
  statuses.set('a', inPlace)
  tick()
  t.equal(sent.length, 3, 'the same fields again: nothing sent')
  inPlace.subscribers = 3
  inPlace.requestedIntervals.push(5)
  tick()
  t.equal(sent.length, 4, 'a change made in place is sent')
  t.match(JSON.parse(sent[3]!), { sse_clients: 3, requested_intervals: [1, 1, 5] })
})
