/**
 * Typed client for the fastify-agent-sse routes, for browsers and Node >= 20.
 * No runtime dependencies: it uses `fetch` and an `EventSource` (the browser's, or
 * the `eventsource` package in Node 20, which has none built in).
 */
import type { AgentSseErrorBody } from '../errors.js'
import type { GapBody, StreamListBody, StreamStatusBody } from '../routes/schemas.js'

/** An `event: gap` frame: `missed` samples after `last_event_id` are no longer held. */
export type GapInfo = GapBody
/** `GET /agents/:agentId/status`, and every control route's answer. */
export type StreamStatus = StreamStatusBody
/** `GET /streams`. */
export type StreamList = StreamListBody

/** The parts of a MessageEvent the client reads (and of an error event: `code` is the HTTP status of a refused stream in the `eventsource` package). */
export interface SseMessage {
  readonly data: string
  readonly lastEventId: string
  readonly code?: number
  readonly message?: string
}

/** The parts of an EventSource the client uses; the browser's and the `eventsource` package's both fit. */
export interface EventSourceLike {
  readonly readyState: number
  close (): void
  addEventListener (type: string, listener: (event: SseMessage) => void): void
}

/**
 * An EventSource class: the browser's, or the `eventsource` package's. The client passes the latter
 * `{ fetch }` as a second argument to send its headers (a browser's ignores it).
 */
export type EventSourceConstructor = new (url: string) => EventSourceLike

/** What the `eventsource` package takes to send headers: a fetch through which it connects. */
interface EventSourceInit {
  fetch (url: string | URL, init: { headers?: Record<string, string> }): Promise<unknown>
}

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
  /**
   * Extra headers on every request (for example `authorization`), streams included where the
   * EventSource can send them (the `eventsource` package can; a browser's EventSource cannot:
   * use a cookie there).
   */
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
  /**
   * The server refused the stream (401, 403, 404, 503…): the EventSource gave up. `statusCode` is 0 where the
   * EventSource does not tell (a browser's).
   */
  onRefused? (error: AgentStreamClientError): void
}

/** The agent's status, from a fleet stream's `event: status`. */
export type FleetStatus = StreamStatus

export interface FleetHandlers {
  onMetrics? (agentId: string, sample: Record<string, unknown>, eventId: number): void
  /** The agent is over on this connection (`cancelled`, `agent-offline`, …); the others go on. */
  onEnd? (agentId: string, reason: string): void
  /** The agent's stream could not start or failed; it is over on this connection until the stream is reopened. */
  onServerError? (agentId: string, error: AgentStreamClientError): void
  onGap? (agentId: string, gap: GapInfo): void
  /** The agent's status when the stream opens, then each change (at most one per agent per second). */
  onStatus? (status: FleetStatus): void
  /** The server refused the stream (401, 403, 404, 503…); see `StreamHandlers.onRefused`. */
  onRefused? (error: AgentStreamClientError): void
}

/** A fleet stream: one EventSource for many agents. */
export interface FleetStream {
  /** The agents watched now. */
  readonly agentIds: readonly string[]
  /** The newest event id received (0 before any). */
  readonly lastEventId: number
  /**
   * Watches another set of agents: the stream is reopened at once from the last event id, so agents
   * kept resume without a loss and, within the server's grace window, without a stop and start.
   */
  setAgents (agentIds: readonly string[]): void
  close (): void
}

/** An HTTP error answered by the plugin (or anything in front of it). */
export class AgentStreamClientError extends Error {
  readonly statusCode: number
  readonly code: string
  readonly error: string

  constructor (body: AgentSseErrorBody) {
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
    const query = intervalSeconds === undefined ? '' : `?interval_seconds=${encodeURIComponent(intervalSeconds)}`
    const source = this.openEventSource(`${this.agentUrl(agentId)}/metrics/stream${query}`, handlers.onRefused)
    source.addEventListener('metrics', (event) => handlers.onMetrics?.(JSON.parse(event.data), Number(event.lastEventId)))
    source.addEventListener('gap', (event) => handlers.onGap?.(JSON.parse(event.data)))
    source.addEventListener('end', (event) => {
      source.close()
      handlers.onEnd?.(parseJson<{ reason?: string }>(event.data)?.reason ?? 'ended')
    })
    source.addEventListener('error', (event) => {
      // The EventSource's own connection errors carry no data; the plugin's `event: error` does.
      const body = typeof event?.data === 'string' ? parseJson<AgentSseErrorBody>(event.data) : undefined
      if (body && typeof body.statusCode === 'number') handlers.onServerError?.(new AgentStreamClientError(body))
    })
    return source
  }

  /**
   * One SSE connection for many agents (`GET /metrics/stream?agents=…`): browsers allow six HTTP/1.1
   * connections per origin, so a console watching more agents than that needs this.
   */
  streamFleet (agentIds: readonly string[], intervalSeconds?: number, handlers: FleetHandlers = {}): FleetStream {
    let agents = [...new Set(agentIds)]
    let lastEventId = 0
    let source: EventSourceLike | null = null
    let over = new Set<string>()
    const open = (): void => {
      over = new Set()
      if (agents.length === 0) return
      const query = new URLSearchParams({ agents: agents.join(',') })
      if (intervalSeconds !== undefined) query.set('interval_seconds', String(intervalSeconds))
      // A new EventSource cannot send Last-Event-ID itself: the route also takes it in the query.
      if (lastEventId > 0) query.set('last_event_id', String(lastEventId))
      const opened = this.openEventSource(`${this.baseUrl}/metrics/stream?${query}`, handlers.onRefused)
      source = opened
      const agentOf = (data: string): { agent_id?: unknown } & Record<string, unknown> => parseJson(data) ?? {}
      const isOver = (agentId: string): void => {
        over.add(agentId)
        // Every agent is over: the server ends the response; do not let the EventSource reconnect to it.
        if (agents.every((id) => over.has(id))) opened.close()
      }
      opened.addEventListener('metrics', (event) => {
        const { agent_id: agentId, metrics } = agentOf(event.data)
        lastEventId = Math.max(lastEventId, Number(event.lastEventId) || 0)
        if (typeof agentId === 'string') handlers.onMetrics?.(agentId, metrics as Record<string, unknown>, Number(event.lastEventId))
      })
      opened.addEventListener('status', (event) => {
        const status = parseJson<FleetStatus>(event.data)
        if (status) handlers.onStatus?.(status)
      })
      opened.addEventListener('gap', (event) => {
        const { agent_id: agentId, missed, last_event_id: last } = agentOf(event.data)
        if (typeof agentId === 'string') handlers.onGap?.(agentId, { missed: Number(missed), last_event_id: Number(last) })
      })
      opened.addEventListener('end', (event) => {
        const { agent_id: agentId, reason } = agentOf(event.data)
        if (typeof agentId !== 'string') return
        handlers.onEnd?.(agentId, typeof reason === 'string' ? reason : 'ended')
        isOver(agentId)
      })
      opened.addEventListener('error', (event) => {
        const body = typeof event?.data === 'string' ? agentOf(event.data) : undefined
        if (typeof body?.agent_id !== 'string' || typeof body.statusCode !== 'number') return
        handlers.onServerError?.(body.agent_id, new AgentStreamClientError(body as unknown as AgentSseErrorBody))
        isOver(body.agent_id)
      })
    }
    open()
    return {
      get agentIds () { return agents },
      get lastEventId () { return lastEventId },
      setAgents (next) {
        agents = [...new Set(next)]
        source?.close()
        open()
      },
      close () {
        source?.close()
        source = null
      }
    }
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

  /** An EventSource sending this client's headers where it can, that reports a refused stream. */
  private openEventSource (url: string, onRefused?: (error: AgentStreamClientError) => void): EventSourceLike {
    const EventSourceImpl = this.EventSourceImpl
    if (!EventSourceImpl) throw new TypeError('AgentStreamClient: no EventSource available; pass one (in Node 20: the "eventsource" package)')
    const headers = this.headers
    const fetchImpl = this.fetchImpl
    const init: EventSourceInit | undefined = Object.keys(headers).length === 0 || !fetchImpl
      ? undefined
      : { fetch: (input, options) => (fetchImpl as (url: string | URL, init: object) => Promise<unknown>)(input, { ...options, headers: { ...options.headers, ...headers } }) }
    const source = init === undefined ? new EventSourceImpl(url) : new (EventSourceImpl as new (url: string, init: EventSourceInit) => EventSourceLike)(url, init)
    source.addEventListener('error', (event) => {
      // Closed for good without an `event: error` of ours: the server answered something but a stream.
      if (source.readyState !== 2 || typeof event?.data === 'string') return
      const statusCode = typeof event?.code === 'number' ? event.code : 0
      onRefused?.(new AgentStreamClientError({
        statusCode,
        code: 'FST_ERR_AGENT_SSE_CLIENT_REFUSED',
        error: 'Stream refused',
        message: typeof event?.message === 'string' && event.message !== '' ? event.message : `the stream ${url} was refused${statusCode ? ` (${statusCode})` : ''}`
      }))
    })
    return source
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
      const error = parsed as Partial<AgentSseErrorBody> | undefined
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

function parseJson<T> (text: string): T | undefined {
  try {
    return JSON.parse(text) as T
  } catch {
    return undefined
  }
}
