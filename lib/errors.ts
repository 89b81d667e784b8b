import { STATUS_CODES } from 'node:http'
import createError, { type FastifyErrorConstructor } from '@fastify/error'

// Every error the plugin raises is one of these codes, so hosts can match on `code`
// and HTTP callers get a stable `{ statusCode, code, error, message }` body.

// Each class is annotated with a named type (not inferred from createError): an inferred one is emitted in
// the .d.ts as `createError.FastifyErrorConstructor` off the default import, which `moduleResolution: bundler`
// reads as @fastify/error's `default` value export, not its namespace: TS2503, and with skipLibCheck every
// FST_ERR_* became `any` (issue 16). A named type import resolves the same under every resolver.

/** An error class whose instances carry their literal `code` and `statusCode`, built from `Args`. */
type AgentSseErrorClass<Code extends string, StatusCode extends number, Args extends unknown[]> =
  FastifyErrorConstructor<{ code: Code, statusCode: StatusCode }, Args>

export const FST_ERR_AGENT_SSE_INVALID_OPTION: FastifyErrorConstructor<{ code: 'FST_ERR_AGENT_SSE_INVALID_OPTION' }, [string, string]> = createError(
  'FST_ERR_AGENT_SSE_INVALID_OPTION',
  'fastify-agent-sse: option "%s" %s',
  500,
  TypeError
)

export const FST_ERR_AGENT_SSE_ALREADY_REGISTERED: FastifyErrorConstructor<{ code: 'FST_ERR_AGENT_SSE_ALREADY_REGISTERED' }, []> = createError(
  'FST_ERR_AGENT_SSE_ALREADY_REGISTERED',
  'fastify-agent-sse: the plugin is already registered in this encapsulation context (app.streamLifecycle exists); ' +
    'to serve it twice, under two prefixes, register each inside its own plugin: ' +
    'app.register(async (scope) => { await scope.register(agentSse, { adapter, prefix: "/a" }) })',
  500
)

export const FST_ERR_AGENT_SSE_UNKNOWN_AGENT: AgentSseErrorClass<'FST_ERR_AGENT_SSE_UNKNOWN_AGENT', 404, [string]> = createError(
  'FST_ERR_AGENT_SSE_UNKNOWN_AGENT',
  'fastify-agent-sse: unknown agent "%s"',
  404
)

export const FST_ERR_AGENT_SSE_UNKNOWN_TASK: AgentSseErrorClass<'FST_ERR_AGENT_SSE_UNKNOWN_TASK', 404, [string]> = createError(
  'FST_ERR_AGENT_SSE_UNKNOWN_TASK',
  'fastify-agent-sse: no live metrics streaming task "%s"',
  404
)

export const FST_ERR_AGENT_SSE_ADAPTER_FAILED: AgentSseErrorClass<'FST_ERR_AGENT_SSE_ADAPTER_FAILED', 502, [string, string, string, { cause: unknown }?]> = createError(
  'FST_ERR_AGENT_SSE_ADAPTER_FAILED',
  'fastify-agent-sse: adapter %s for agent "%s" failed: %s',
  502
)

export const FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT: AgentSseErrorClass<'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT', 504, [string, string, number]> = createError(
  'FST_ERR_AGENT_SSE_ADAPTER_TIMEOUT',
  'fastify-agent-sse: adapter %s for agent "%s" did not answer within %d ms',
  504
)

export const FST_ERR_AGENT_SSE_STREAM_ENDED: AgentSseErrorClass<'FST_ERR_AGENT_SSE_STREAM_ENDED', 502, [string, string]> = createError(
  'FST_ERR_AGENT_SSE_STREAM_ENDED',
  'fastify-agent-sse: metrics stream of agent "%s" ended before it became active: %s',
  502
)

export const FST_ERR_AGENT_SSE_FORBIDDEN: AgentSseErrorClass<'FST_ERR_AGENT_SSE_FORBIDDEN', 403, [string]> = createError(
  'FST_ERR_AGENT_SSE_FORBIDDEN',
  'fastify-agent-sse: not allowed to access agent "%s"',
  403
)

export const FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS: AgentSseErrorClass<'FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS', 503, [string, number]> = createError(
  'FST_ERR_AGENT_SSE_TOO_MANY_CLIENTS',
  'fastify-agent-sse: too many SSE clients (%s limit of %d reached)',
  503
)

export const FST_ERR_AGENT_SSE_HOLD_ENDED: AgentSseErrorClass<'FST_ERR_AGENT_SSE_HOLD_ENDED', 409, [string]> = createError(
  'FST_ERR_AGENT_SSE_HOLD_ENDED',
  'fastify-agent-sse: the manual hold on agent "%s" ended (released, cancelled or ended by the agent) before its stream became active',
  409
)

export const FST_ERR_AGENT_SSE_CLOSED: AgentSseErrorClass<'FST_ERR_AGENT_SSE_CLOSED', 503, []> = createError(
  'FST_ERR_AGENT_SSE_CLOSED',
  'fastify-agent-sse: the stream lifecycle is closed',
  503
)

export const FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE: AgentSseErrorClass<'FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE', 503, [string]> = createError(
  'FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE',
  'fastify-agent-sse: the cluster coordinator is unavailable: %s',
  503
)

export const FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED: AgentSseErrorClass<'FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED', 503, [string, string]> = createError(
  'FST_ERR_AGENT_SSE_AUTHORIZATION_FAILED',
  'fastify-agent-sse: could not check access to agent "%s": authorizeAgent %s',
  503
)

export const FST_ERR_AGENT_SSE_TOO_MANY_HOLDS: AgentSseErrorClass<'FST_ERR_AGENT_SSE_TOO_MANY_HOLDS', 503, [number]> = createError(
  'FST_ERR_AGENT_SSE_TOO_MANY_HOLDS',
  'fastify-agent-sse: too many manual holds (maxHolds limit of %d reached)',
  503
)

export const FST_ERR_AGENT_SSE_INVALID_INTERVAL: AgentSseErrorClass<'FST_ERR_AGENT_SSE_INVALID_INTERVAL', 400, [number, number]> = createError(
  'FST_ERR_AGENT_SSE_INVALID_INTERVAL',
  'fastify-agent-sse: interval_seconds must be an integer from %d to %d',
  400
)

export const FST_ERR_AGENT_SSE_INVALID_AGENTS: AgentSseErrorClass<'FST_ERR_AGENT_SSE_INVALID_AGENTS', 400, [string]> = createError(
  'FST_ERR_AGENT_SSE_INVALID_AGENTS',
  'fastify-agent-sse: querystring/agents %s',
  400
)

/** The error shape sent in an SSE `event: error` frame and in HTTP error bodies. */
export interface AgentSseErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

/** The body of an error as HTTP callers and SSE `event: error` frames see it. */
export function errorBody (err: Error & { statusCode?: number, code?: string }): AgentSseErrorBody {
  const statusCode = typeof err.statusCode === 'number' ? err.statusCode : 500
  return {
    statusCode,
    code: err.code ?? 'FST_ERR_AGENT_SSE_INTERNAL',
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: err.message
  }
}
