import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { Writable } from 'node:stream'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { Agent, request, type Dispatcher } from 'undici'
import type { Test } from 'tap'
import agentSse, { type AgentSseOptions } from '../../lib/index.js'
import { TestAdapter } from './test-adapter.js'

export interface LogRecord {
  level: number
  msg: string
  [field: string]: unknown
}

/** A Fastify app with the plugin, listening on 127.0.0.1, closed in teardown. Captures its log lines. */
export async function startServer (t: Test, options: Partial<AgentSseOptions> & { adapter?: TestAdapter } = {}, configure?: (app: FastifyInstance) => void | Promise<void>, serverOptions: FastifyServerOptions = {}) {
  const adapter = options.adapter ?? new TestAdapter()
  const logs: LogRecord[] = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line))
      callback()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream }, ...serverOptions })
  // A client agent per test, destroyed before the server closes: undici may keep a
  // spare connection open that would otherwise hold app.close() for its keep-alive time.
  const dispatcher = new Agent()
  t.teardown(async () => {
    await dispatcher.destroy()
    await app.close()
  })
  if (configure) await configure(app)
  await app.register(agentSse, { stopDelayMs: 100, ...options, adapter })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const baseUrl = `http://127.0.0.1:${address.port}`
  return {
    app,
    adapter,
    baseUrl,
    logs,
    dispatcher,
    sse: (path: string, headers: Record<string, string> = {}) => openSse(baseUrl + path, headers, dispatcher),
    json: (path: string, method: 'GET' | 'POST' = 'GET', body?: unknown, headers: Record<string, string> = {}) => getJson(baseUrl + path, method, body, headers, dispatcher),
    status: async (agentId: string) => (await getJson(`${baseUrl}/agents/${agentId}/status`, 'GET', undefined, {}, dispatcher)).body
  }
}

/** Polls until `check` returns true (generous bound: the condition is the assertion, not the time). */
export async function waitFor (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

export interface SseStream {
  url: string
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  /** Raw text received so far. */
  raw: string
  events: EventSourceMessage[]
  retry: number | null
  ended: boolean
  next (predicate?: (event: EventSourceMessage) => boolean, what?: string): Promise<EventSourceMessage>
  close (): void
}

/** An SSE request over undici, parsed with eventsource-parser; `close()` aborts it like a closed tab. */
export async function openSse (url: string, headers: Record<string, string> = {}, dispatcher?: Dispatcher): Promise<SseStream> {
  const response = await request(url, { dispatcher, headers: { accept: 'text/event-stream', ...headers } })
  const stream: SseStream = {
    url,
    statusCode: response.statusCode,
    headers: response.headers as SseStream['headers'],
    raw: '',
    events: [],
    retry: null,
    ended: false,
    async next (predicate = () => true, what = 'an SSE event') {
      let found: EventSourceMessage | undefined
      await waitFor(() => {
        found = stream.events.find(predicate)
        return found !== undefined
      }, what)
      stream.events.splice(stream.events.indexOf(found!), 1)
      return found!
    },
    close () {
      response.body.destroy()
    }
  }
  const parser = createParser({
    onEvent (event) { stream.events.push(event) },
    onRetry (retry) { stream.retry = retry }
  })
  response.body.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8')
    stream.raw += text
    parser.feed(text)
  })
  response.body.on('end', () => { stream.ended = true })
  response.body.on('error', () => { stream.ended = true })
  response.body.on('close', () => { stream.ended = true })
  return stream
}

export async function getJson (url: string, method: 'GET' | 'POST' = 'GET', body?: unknown, headers: Record<string, string> = {}, dispatcher?: Dispatcher) {
  const response = await request(url, {
    dispatcher,
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await response.body.text()
  return { statusCode: response.statusCode, headers: response.headers, body: text ? JSON.parse(text) : undefined }
}
