import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { waitFor } from './server.js'

/** What a cluster instance's fake adapter reports (see test/fixtures/cluster-instance.js). */
export interface RecordedEvent {
  type: 'start' | 'stop' | 'stop-failed'
  /** The INSTANCE_ID of the process that made the adapter call. */
  instance: string
  agentId: string
  taskId: string
  /** Date.now() in the instance process when it made the call. */
  at: number
  /** On stops: the task was not running in that process (another instance's, or a previous process's). */
  foreign?: boolean
  [field: string]: unknown
}

export interface Recorder {
  url: string
  /** Every event in arrival order (the test process's order, one HTTP request each). */
  events: RecordedEvent[]
  starts (agentId?: string): RecordedEvent[]
  stops (agentId?: string): RecordedEvent[]
  /** Task ids started and not yet stopped (by any instance), in start order. */
  liveTasks (agentId?: string): string[]
  waitFor (predicate: (events: RecordedEvent[]) => boolean, what: string, timeoutMs?: number): Promise<void>
}

/**
 * An HTTP sink in the test process for the instances' adapter calls: the one place that
 * sees every agent task of the whole cluster, so a test can check that exactly one
 * instance streams an agent and that nothing is left running.
 */
export async function startRecorder (t: Test): Promise<Recorder> {
  const events: RecordedEvent[] = []
  const server = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => { body += chunk })
    request.on('end', () => {
      try {
        events.push(JSON.parse(body) as RecordedEvent)
        response.writeHead(204).end()
      } catch (err) {
        response.writeHead(400, { 'content-type': 'text/plain' }).end(String(err))
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    // The instances' fetch keeps connections alive; close() alone would wait for them.
    server.closeAllConnections()
    server.close()
    await once(server, 'close')
  })

  const of = (type: RecordedEvent['type'], agentId?: string) =>
    events.filter((event) => event.type === type && (agentId === undefined || event.agentId === agentId))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    events,
    starts: (agentId) => of('start', agentId),
    stops: (agentId) => of('stop', agentId),
    liveTasks (agentId) {
      const stopped = new Set(of('stop', agentId).map((event) => event.taskId))
      return of('start', agentId).map((event) => event.taskId).filter((taskId) => !stopped.has(taskId))
    },
    waitFor: (predicate, what, timeoutMs = 10_000) => waitFor(() => predicate(events), what, timeoutMs)
  }
}
