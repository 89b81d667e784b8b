import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { FST_ERR_AGENT_SSE_UNKNOWN_TASK } from '../errors.js'
import { agentGuard, filterAuthorized, refuseForNow, requestedInterval, type RouteContext } from './context.js'
import {
  AgentParams,
  DEFAULT_PAGE_SIZE,
  errorResponses as errors,
  MetricsRef,
  operation,
  startBody,
  StreamListQuery,
  StreamListRef,
  StreamStatusRef,
  TaskParams,
  toStatusBody
} from './schemas.js'

/** Manual control: start/stop hold, current metrics, status, stream list, task cancellation. */
export function registerControlRoutes (fastify: FastifyInstance, context: RouteContext): void {
  const { lifecycle, options } = context
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const ensureAgentExists = agentGuard(context)

  app.post('/agents/:agentId/metrics/streaming/start', {
    schema: {
      ...operation({
        operationId: 'startAgentMetricsStreaming',
        summary: "Hold an agent's metrics stream open without SSE clients",
        description: 'A manual hold: keeps the stream running with no SSE clients. Answers with the status once the stream is ' +
          'active; 502/504 (and no hold) if the agent cannot start; 409 if the hold was released, cancelled or ended by the ' +
          'agent before the stream became active. Repeating it is harmless; a new interval re-tunes the stream. The body is optional.'
      }),
      params: AgentParams,
      body: startBody(options.minIntervalSeconds, options.maxIntervalSeconds),
      response: { 200: StreamStatusRef, ...errors }
    },
    preHandler: ensureAgentExists
  }, async (request, reply) => {
    const intervalSeconds = requestedInterval(context, request.body?.interval_seconds)
    try {
      return toStatusBody(await lifecycle.hold(request.params.agentId, { intervalSeconds }))
    } catch (err) {
      if ((err as { code?: string }).code === 'FST_ERR_AGENT_SSE_TOO_MANY_HOLDS') refuseForNow(context, reply, err as Error)
      throw err
    }
  })

  app.post('/agents/:agentId/metrics/streaming/stop', {
    schema: {
      ...operation({
        operationId: 'stopAgentMetricsStreaming',
        summary: "Release an agent's manual hold",
        description: 'SSE clients keep streaming; with none left the stream stops after the grace window.'
      }),
      params: AgentParams,
      response: { 200: StreamStatusRef, ...errors }
    },
    preHandler: ensureAgentExists
  }, async (request) => toStatusBody(await lifecycle.release(request.params.agentId)))

  app.get('/agents/:agentId/metrics/current', {
    schema: {
      ...operation({ operationId: 'getAgentCurrentMetrics', summary: "Get an agent's current metrics" }),
      params: AgentParams,
      response: { 200: MetricsRef, ...errors }
    },
    preHandler: ensureAgentExists
  }, async (request) => lifecycle.getCurrentMetrics(request.params.agentId))

  app.get('/agents/:agentId/status', {
    schema: {
      ...operation({ operationId: 'getAgentStreamStatus', summary: "Get an agent's metrics stream status" }),
      params: AgentParams,
      response: { 200: StreamStatusRef, ...errors }
    },
    preHandler: ensureAgentExists
  }, async (request) => toStatusBody(await lifecycle.currentStatus(request.params.agentId)))

  app.get('/streams', {
    schema: {
      ...operation({
        operationId: 'listAgentStreams',
        summary: 'List the agents whose metrics stream is not idle',
        description: 'By agent id; pass `next_cursor` as `cursor` for the next page. Only the agents the request may see, so a page may hold fewer than `limit`.'
      }),
      querystring: StreamListQuery,
      response: { 200: StreamListRef, ...errors }
    }
  }, async (request) => {
    // One page at a time: a list of every stream of a large fleet would block the event loop.
    const { streams, next } = await lifecycle.currentPage(request.query.cursor ?? null, request.query.limit ?? DEFAULT_PAGE_SIZE)
    // Only the agents this request may see (a page may hold fewer than `limit`).
    const visible = new Set(await filterAuthorized(context, request, streams.map((status) => status.agentId)))
    return { streams: streams.filter((status) => visible.has(status.agentId)).map(toStatusBody), next_cursor: next }
  })

  app.post('/tasks/:taskId/cancel', {
    schema: {
      ...operation({
        operationId: 'cancelAgentStreamTask',
        summary: 'Cancel a live metrics streaming task',
        description: 'Releases the hold, ends every SSE client with `event: end` `{"reason":"cancelled"}`, waits for the ' +
          "agent's stop and answers with the agent's status. 404 if the id is not a live task of an agent the request may see."
      }),
      params: TaskParams,
      response: { 200: StreamStatusRef, ...errors }
    }
  }, async (request) => {
    const { taskId } = request.params
    // One lookup, then only an agent this request may touch is cancelled. A task of an agent it may
    // not see answers exactly as an unknown task does, so the route cannot be used to probe task ids.
    const [agentId] = await filterAuthorized(context, request, lifecycle.agentsOfTask(taskId))
    const status = agentId === undefined ? false : await lifecycle.cancelTask(taskId, agentId)
    if (status === false) throw new FST_ERR_AGENT_SSE_UNKNOWN_TASK(taskId)
    return toStatusBody(status)
  })
}
