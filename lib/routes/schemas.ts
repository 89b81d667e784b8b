import { Type, type Static } from '@sinclair/typebox'

// Ids made only of dots (`.`, `..`, also sent as `%2e%2e`) are refused: an adapter may build a path or URL from the id.
export const AGENT_ID_PATTERN = '^(?!\\.+$)[A-Za-z0-9._:-]{1,128}$'

export const AgentParams = Type.Object({
  agentId: Type.String({ pattern: AGENT_ID_PATTERN, description: 'Agent id: 1-128 of A-Z a-z 0-9 . _ : -, not only dots' })
})

export const TaskParams = Type.Object({
  taskId: Type.String({ minLength: 1, maxLength: 256 })
})

/** `interval_seconds` bounded by the plugin's options, so the schema is built per registration. */
export function intervalSeconds (minimum: number, maximum: number) {
  return Type.Integer({ minimum, maximum, description: `Seconds between samples (${minimum}-${maximum})` })
}

export function streamQuery (minimum: number, maximum: number) {
  return Type.Object({ interval_seconds: Type.Optional(intervalSeconds(minimum, maximum)) })
}

/** The fleet route: `agents` is a comma-separated list, parsed (and each id checked) by the route. */
export function fleetQuery (minimum: number, maximum: number, maxAgents: number) {
  return Type.Object({
    agents: Type.String({ minLength: 1, maxLength: maxAgents * 129, description: `Comma-separated agent ids, 1 to ${maxAgents} distinct` }),
    interval_seconds: Type.Optional(intervalSeconds(minimum, maximum)),
    // A new EventSource cannot send Last-Event-ID (only its own reconnects do): a client reopening the stream
    // with another set of agents passes it here. The header wins when both are sent.
    last_event_id: Type.Optional(Type.String({ maxLength: 32, description: 'Resume after this event id, as Last-Event-ID' }))
  })
}

export function startBody (minimum: number, maximum: number) {
  return Type.Union([
    Type.Object({ interval_seconds: Type.Optional(intervalSeconds(minimum, maximum)) }),
    // A POST with no body at all is a start with the default interval.
    Type.Null()
  ])
}

export const StreamStatusSchema = Type.Object({
  agent_id: Type.String(),
  streaming_active: Type.Boolean(),
  state: Type.Union([Type.Literal('idle'), Type.Literal('starting'), Type.Literal('active'), Type.Literal('lingering'), Type.Literal('stopping')]),
  sse_clients: Type.Integer(),
  manual_hold: Type.Boolean(),
  task_id: Type.Union([Type.String(), Type.Null()]),
  interval_seconds: Type.Union([Type.Integer(), Type.Null()]),
  started_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  requested_intervals: Type.Array(Type.Integer()),
  // Cluster mode only: the instance that streams the agent, null when idle.
  owner: Type.Optional(Type.Union([Type.String(), Type.Null()]))
}, { $id: 'AgentSseStreamStatus' })

export const DEFAULT_PAGE_SIZE = 100

export const StreamListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: `Streams per page (default ${DEFAULT_PAGE_SIZE})` })),
  cursor: Type.Optional(Type.String({ pattern: AGENT_ID_PATTERN, description: 'The `next_cursor` of the previous page' }))
})

export const StreamListSchema = Type.Object({
  streams: Type.Array(StreamStatusSchema),
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: Type.Union([Type.String(), Type.Null()])
})

// `code` is optional: errors of the host's own hooks and plugins (a 401 from an auth hook,
// @fastify/rate-limit's 429) answer through these routes too, and many have none.
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String()),
  error: Type.String(),
  message: Type.String()
})

export const MetricsSchema = Type.Object({}, { additionalProperties: true })

export type StreamStatusBody = Static<typeof StreamStatusSchema>
export type StreamListBody = Static<typeof StreamListSchema>
