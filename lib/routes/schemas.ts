import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { FastifyInstance, FastifySchemaValidationError } from 'fastify'
import type { AgentSseErrorBody } from '../errors.js'
import type { GapInfo, StreamStatus } from '../lifecycle/types.js'
import type { ResolvedOptions } from '../options.js'

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
    Type.Object({ interval_seconds: Type.Optional(intervalSeconds(minimum, maximum)) }, {
      // Not `false`: Fastify's Ajv runs with `removeAdditional: true`, which silently drops the properties
      // `additionalProperties: false` forbids, so `{"intervalSeconds": 2}` would start at the default interval.
      // A schema that nothing matches is never removed: the unknown property fails the request.
      additionalProperties: Type.Never()
    }),
    // A POST with no body at all is a start with the default interval.
    Type.Null()
  ], {
    description: 'Optional: with no body (or `null`, or `{}`) the hold uses the default interval. Any other property is a 400.'
  })
}

// ---- Shared schemas: registered once per routes scope (`addSharedSchemas`) and referenced by `$id`, so
// @fastify/swagger emits each once under components.schemas, titled with its `$id`.

// `code` is optional: errors of the host's own hooks and plugins (a 401 from an auth hook,
// @fastify/rate-limit's 429) answer through these routes too, and many have none.
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String()),
  error: Type.String(),
  message: Type.String()
}, { $id: 'AgentSseError', description: 'An error: the HTTP status, the error code (`FST_ERR_AGENT_SSE_*`, `FST_ERR_VALIDATION`, …), the status text and a message' })

/**
 * Compiles only while the schema describes exactly the body `errors.ts` builds for every error the plugin
 * sends (HTTP and SSE `event: error`): a field added there and not here fails the build.
 * @internal
 */
export type ErrorSchemaMatchesErrorBody = Assert<[KeysOfOnlyOne] extends [never] ? [AgentSseErrorBody] extends [ErrorSchemaBody] ? true : false : false>
type ErrorSchemaBody = Static<typeof ErrorSchema>
type KeysOfOnlyOne = Exclude<keyof AgentSseErrorBody, keyof ErrorSchemaBody> | Exclude<keyof ErrorSchemaBody, keyof AgentSseErrorBody>
type Assert<T extends true> = T

const STREAM_STATES = ['idle', 'starting', 'active', 'lingering', 'stopping'] as const

export const StreamStatusSchema = Type.Object({
  agent_id: Type.String(),
  streaming_active: Type.Boolean(),
  // An enum rather than a union of literals: one `enum` in the OpenAPI document, not five schemas.
  state: Type.Unsafe<typeof STREAM_STATES[number]>(Type.String({ enum: [...STREAM_STATES] })),
  sse_clients: Type.Integer(),
  manual_hold: Type.Boolean(),
  task_id: Type.Union([Type.String(), Type.Null()]),
  interval_seconds: Type.Union([Type.Integer(), Type.Null()]),
  started_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  requested_intervals: Type.Array(Type.Integer()),
  // Cluster mode only: the instance that streams the agent, null when idle.
  owner: Type.Optional(Type.Union([Type.String(), Type.Null()]))
}, { $id: 'AgentSseStreamStatus', description: "An agent's metrics stream: its state, SSE clients, manual hold, task and intervals" })

export const DEFAULT_PAGE_SIZE = 100

export const StreamListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: `Streams per page (default ${DEFAULT_PAGE_SIZE})` })),
  cursor: Type.Optional(Type.String({ pattern: AGENT_ID_PATTERN, description: 'The `next_cursor` of the previous page' }))
})

export const StreamListSchema = Type.Object({
  streams: Type.Array(ref(StreamStatusSchema)),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page' })
}, { $id: 'AgentSseStreamList', description: 'One page of the agents that are not idle, by agent id' })

export const MetricsSchema = Type.Object({}, { $id: 'AgentSseMetrics', additionalProperties: true, description: "A metrics sample, as the agent's adapter answers it" })

const SHARED_SCHEMAS = [ErrorSchema, StreamStatusSchema, StreamListSchema, MetricsSchema]

/** The shared schemas, added once to the routes' scope. */
export function addSharedSchemas (scope: FastifyInstance): void {
  for (const schema of SHARED_SCHEMAS) scope.addSchema(schema)
}

/** A `$ref` to a shared schema, typed as the schema itself. */
function ref<T extends TSchema> (schema: T) {
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id!))
}

export const ErrorRef = ref(ErrorSchema)
export const StreamStatusRef = ref(StreamStatusSchema)
export const StreamListRef = ref(StreamListSchema)
export const MetricsRef = ref(MetricsSchema)

/** Every route's error responses. */
export const errorResponses = { '4xx': ErrorRef, '5xx': ErrorRef }

export type StreamStatusBody = Static<typeof StreamStatusSchema>
export type StreamListBody = Static<typeof StreamListSchema>

/** The lifecycle's status as the wire carries it (the one place the two shapes meet). */
export function toStatusBody (status: StreamStatus): StreamStatusBody {
  const body: StreamStatusBody = {
    agent_id: status.agentId,
    streaming_active: status.streamingActive,
    state: status.state,
    sse_clients: status.subscribers,
    manual_hold: status.manualHold,
    task_id: status.taskId,
    interval_seconds: status.intervalSeconds,
    started_at: status.startedAt,
    requested_intervals: status.requestedIntervals
  }
  if (status.owner !== undefined) body.owner = status.owner
  return body
}

/** An `event: gap` frame's data: what a resuming client missed that is no longer held. */
export interface GapBody {
  missed: number
  last_event_id: number
}

/** A gap as the wire carries it. */
export function toGapBody (gap: GapInfo): GapBody {
  return { missed: gap.missed, last_event_id: gap.lastEventId }
}

// ---- OpenAPI: what @fastify/swagger reads from a route schema besides the JSON schemas.

export const OPENAPI_TAG = 'agent-metrics'

/** Spread into a route schema (its own keys are typed by @fastify/swagger, which the plugin does not import). */
export function operation (doc: { operationId: string, summary: string, description?: string }) {
  return { tags: [OPENAPI_TAG], ...doc }
}

/**
 * The 200 of a stream route. Only documentation: the route hijacks the reply, so Fastify never
 * serializes a body against it.
 */
export function eventStreamResponse (description: string) {
  return { description, content: { 'text/event-stream': { schema: Type.String({ description: 'Server-Sent Events' }) } } }
}

// ---- Validation errors: one clear message instead of Ajv's list for each branch of a union
// (`body/interval_seconds must be integer, body must be null, body must match a schema in anyOf`).

/** A route's `schemaErrorFormatter`: the one error that says what is wrong, in words that name the fix. */
export function validationErrorFormatter ({ minIntervalSeconds, maxIntervalSeconds }: ResolvedOptions) {
  return (errors: FastifySchemaValidationError[], dataVar: string): Error =>
    new Error(validationMessage(errors, dataVar, minIntervalSeconds, maxIntervalSeconds))
}

function validationMessage (errors: FastifySchemaValidationError[], dataVar: string, minimum: number, maximum: number): string {
  // A union's own error only says that no branch matched; the branches' errors say why.
  const causes = errors.filter((error) => error.keyword !== 'anyOf')
  if (causes.length === 0) return `${dataVar} is invalid`
  // The deepest error is inside the branch the request meant (an object with a bad property, not "not null").
  const depth = (error: FastifySchemaValidationError) => error.instancePath.split('/').length
  const deepest = causes.reduce((found, error) => depth(error) > depth(found) ? error : found)
  const path = dataVar + deepest.instancePath
  // A JSON pointer token: `~1` is `/`, `~0` is `~`.
  const property = deepest.instancePath.slice(deepest.instancePath.lastIndexOf('/') + 1).replaceAll('~1', '/').replaceAll('~0', '~')
  if (deepest.schemaPath.endsWith('/additionalProperties/not')) {
    return `${path.slice(0, path.lastIndexOf('/'))} has unknown property ${JSON.stringify(property.slice(0, 140))}`
  }
  if (property === 'interval_seconds') return `${path} must be an integer from ${minimum} to ${maximum}`
  if (property === 'agentId' && deepest.keyword === 'pattern') return `${path} must be 1-128 characters of A-Z a-z 0-9 . _ : - and not only dots`
  // Only wrong types at one place (say a body that is a string): every type it could have been.
  const types = causes.filter((error) => error.keyword === 'type' && error.instancePath === deepest.instancePath)
  if (types.length === causes.length) {
    const names = types.map(({ params: { type } }) => type === 'object' ? 'a JSON object' : type === 'null' && path === 'body' ? 'empty' : String(type))
    return `${path} must be ${names.join(' or ')}`
  }
  return `${path} ${deepest.message ?? 'is invalid'}`
}
