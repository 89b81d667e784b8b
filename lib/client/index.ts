/**
 * Typed client for the fastify-agent-sse routes, for browsers and Node >= 20.
 * No runtime dependencies: it uses `fetch` and an `EventSource` (the browser's, or
 * the `eventsource` package in Node 20, which has none built in).
 */
import type { GapInfo } from '../lifecycle/types.js'
import type { StreamListBody, StreamStatusBody } from '../routes/schemas.js'

export type { GapInfo } from '../lifecycle/types.js'
/** `GET /agents/:agentId/status`, and every control route's answer. */
export type StreamStatus = StreamStatusBody
/** `GET /streams`. */
export type StreamList = StreamListBody

/** The parts of a MessageEvent the client reads. */
export interface SseMessage {
  readonly data: string
  readonly lastEventId: string
}

/** The parts of an EventSource the client uses; the browser's and the `eventsource` package's both fit. */
export interface EventSourceLike {
  readonly readyState: number
  close (): void
  addEventListener (type: string, listener: (event: SseMessage) => void): void
}

export type EventSourceConstructor = new (url: string) => EventSourceLike

type FetchLike = (input: string, init?: { method?: string, headers?: Record<string, string>, body?: string }) => Promise<{
  ok: boolean
  status: number
  statusText: string
  text (): Promise<string>
}>

export interface AgentStreamClientOptions {
  /** Where the plugin's routes live, prefix included, e.g. `http://127.0.0.1:3000/api` or `/api` in a browser. */
  baseUrl: string
  /** Defaults to `globalThis.EventSource` (browsers). In Node 20 pass the `eventsource` package's. */
  EventSource?: EventSourceConstructor
  /** Defaults to `globalThis.fetch`. */
  fetch?: FetchLike
  /** Extra headers on every JSON request (for example `authorization`). */
  headers?: Record<string, string>
}

export interface StreamHandlers {
  /** A sample and its event id. */
  onMetrics? (sample: Record<string, unknown>, eventId: number): void
  /** The stream ended for good (`cancelled`, `server-shutdown`, `agent-offline`, …); the EventSource is already closed. */
  onEnd? (reason: string): void
  /** The server could not start the agent's stream; the EventSource reconnects after `retry:` and tries again. */
  onServerError? (error: AgentStreamClientError): void
  /** A resume found some samples no longer held. */
  onGap? (gap: GapInfo): void
}

/** An HTTP error answered by the plugin (or anything in front of it). */
export class AgentStreamClientError extends Error {
  readonly statusCode: number
  readonly code: string
  readonly error: string

  constructor (body: { statusCode: number, code: string, error: string, message: string }) {
    super(body.message)
    this.name = 'AgentStreamClientError'
    this.statusCode = body.statusCode
    this.code = body.code
    this.error = body.error
  }
}

export class AgentStreamClient {
  private readonly baseUrl: string
  private readonly EventSourceImpl: EventSourceConstructor | undefined
  private readonly fetchImpl: FetchLike | undefined
  private readonly headers: Record<string, string>

  constructor (options: AgentStreamClientOptions) {
    if (typeof options?.baseUrl !== 'string') throw new TypeError('AgentStreamClient: baseUrl must be a string')
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    const globals = globalThis as { EventSource?: EventSourceConstructor, fetch?: FetchLike }
    this.EventSourceImpl = options.EventSource ?? globals.EventSource
    this.fetchImpl = options.fetch ?? globals.fetch?.bind(globalThis)
    this.headers = options.headers ?? {}
  }

  /**
   * Opens the agent's SSE stream. An `event: end` closes the EventSource, so it does
   * not reconnect to a stream that is over; everything else reconnects as EventSource does.
   */
  streamMetrics (agentId: string, intervalSeconds?: number, handlers: StreamHandlers = {}): EventSourceLike {
    const EventSourceImpl = this.EventSourceImpl
    if (!EventSourceImpl) throw new TypeError('AgentStreamClient: no EventSource available; pass one (in Node 20: the "eventsource" package)')
    const query = intervalSeconds === undefined ? '' : `?interval_seconds=${encodeURIComponent(intervalSeconds)}`
    const source = new EventSourceImpl(`${this.agentUrl(agentId)}/metrics/stream${query}`)
    source.addEventListener('metrics', (event) => handlers.onMetrics?.(JSON.parse(event.data), Number(event.lastEventId)))
    source.addEventListener('gap', (event) => handlers.onGap?.(JSON.parse(event.data)))
    source.addEventListener('end', (event) => {
      source.close()
      handlers.onEnd?.(parseJson<{ reason?: string }>(event.data)?.reason ?? 'ended')
    })
    source.addEventListener('error', (event) => {
      // The EventSource's own connection errors carry no data; the plugin's `event: error` does.
      const body = typeof event?.data === 'string' ? parseJson<ErrorBody>(event.data) : undefined
      if (body && typeof body.statusCode === 'number') handlers.onServerError?.(new AgentStreamClientError(body))
    })
    return source
  }

  startMetricsStreaming (agentId: string, body: { interval_seconds?: number } = {}): Promise<StreamStatus> {
    return this.request('POST', `${this.agentUrl(agentId)}/metrics/streaming/start`, body)
  }

  stopMetricsStreaming (agentId: string): Promise<StreamStatus> {
    return this.request('POST', `${this.agentUrl(agentId)}/metrics/streaming/stop`)
  }

  getCurrentMetrics (agentId: string): Promise<Record<string, unknown>> {
    return this.request('GET', `${this.agentUrl(agentId)}/metrics/current`)
  }

  getStatus (agentId: string): Promise<StreamStatus> {
    return this.request('GET', `${this.agentUrl(agentId)}/status`)
  }

  /** One page of the streams (`limit` 1-1000, default 100); pass the answer's `next_cursor` as `cursor` for the next. */
  listStreams (page: { limit?: number, cursor?: string } = {}): Promise<StreamList> {
    const query = new URLSearchParams()
    if (page.limit !== undefined) query.set('limit', String(page.limit))
    if (page.cursor !== undefined) query.set('cursor', page.cursor)
    const search = query.size > 0 ? `?${query}` : ''
    return this.request('GET', `${this.baseUrl}/streams${search}`)
  }

  cancelTask (taskId: string): Promise<StreamStatus> {
    return this.request('POST', `${this.baseUrl}/tasks/${encodeURIComponent(taskId)}/cancel`)
  }

  private agentUrl (agentId: string): string {
    return `${this.baseUrl}/agents/${encodeURIComponent(agentId)}`
  }

  private async request<T> (method: 'GET' | 'POST', url: string, body?: object): Promise<T> {
    const fetchImpl = this.fetchImpl
    if (!fetchImpl) throw new TypeError('AgentStreamClient: no fetch available; pass one')
    const headers: Record<string, string> = { accept: 'application/json', ...this.headers }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const response = await fetchImpl(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await response.text()
    const parsed = parseJson<unknown>(text)
    if (!response.ok) {
      const error = parsed as Partial<ErrorBody> | undefined
      throw new AgentStreamClientError({
        statusCode: response.status,
        code: typeof error?.code === 'string' ? error.code : 'FST_ERR_AGENT_SSE_CLIENT_HTTP',
        error: typeof error?.error === 'string' ? error.error : response.statusText,
        message: typeof error?.message === 'string' ? error.message : `${method} ${url} answered ${response.status}`
      })
    }
    return parsed as T
  }
}

interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

function parseJson<T> (text: string): T | undefined {
  try {
    return JSON.parse(text) as T
  } catch {
    return undefined
  }
}
