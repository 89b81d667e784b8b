import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { FST_ERR_AGENT_SSE_UNKNOWN_TASK } from '../errors.js'
import { agentGuard, filterAuthorized, refuseForNow, requestedInterval, type RouteContext } from './context.js'
import { AgentParams, DEFAULT_PAGE_SIZE, ErrorSchema, MetricsSchema, startBody, StreamListQuery, StreamListSchema, StreamStatusSchema, TaskParams } from './schemas.js'

const errors = { '4xx': ErrorSchema, '5xx': ErrorSchema }

/** Manual control: start/stop hold, current metrics, status, stream list, task cancellation. */
export function registerControlRoutes (fastify: FastifyInstance, context: RouteContext): void {
  const { lifecycle, options } = context
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const ensureAgentExists = agentGuard(context)

  app.post('/agents/:agentId/metrics/streaming/start', {
    schema: {
      params: AgentParams,
      body: startBody(options.minIntervalSeconds, options.maxIntervalSeconds),
      response: { 200: StreamStatusSchema, ...errors }
    },
    preHandler: ensureAgentExists
  }, async (request, reply) => {
    const intervalSeconds = requestedInterval(context, request.body?.interval_seconds)
    try {
      return await lifecycle.hold(request.params.agentId, { intervalSeconds })
    } catch (err) {
      if ((err as { code?: string }).code === 'FST_ERR_AGENT_SSE_TOO_MANY_HOLDS') refuseForNow(context, reply, err as Error)
      throw err
    }
  })

  app.post('/agents/:agentId/metrics/streaming/stop', {
    schema: { params: AgentParams, response: { 200: StreamStatusSchema, ...errors } },
    preHandler: ensureAgentExists
  }, async (request) => lifecycle.release(request.params.agentId))

  app.get('/agents/:agentId/metrics/current', {
    schema: { params: AgentParams, response: { 200: MetricsSchema, ...errors } },
    preHandler: ensureAgentExists
  }, async (request) => lifecycle.getCurrentMetrics(request.params.agentId))

  app.get('/agents/:agentId/status', {
    schema: { params: AgentParams, response: { 200: StreamStatusSchema, ...errors } },
    preHandler: ensureAgentExists
  }, async (request) => lifecycle.status(request.params.agentId))

  app.get('/streams', {
    schema: { querystring: StreamListQuery, response: { 200: StreamListSchema, ...errors } }
  }, async (request) => {
    // One page at a time: a list of every stream of a large fleet would block the event loop.
    const { streams, next } = lifecycle.page(request.query.cursor ?? null, request.query.limit ?? DEFAULT_PAGE_SIZE)
    // Only the agents this request may see (a page may hold fewer than `limit`).
    const visible = new Set(await filterAuthorized(context, request, streams.map((status) => status.agent_id)))
    return { streams: streams.filter((status) => visible.has(status.agent_id)), next_cursor: next }
  })

  app.post('/tasks/:taskId/cancel', {
    schema: { params: TaskParams, response: { 200: StreamStatusSchema, ...errors } }
  }, async (request) => {
    const { taskId } = request.params
    // One lookup, then only an agent this request may touch is cancelled. A task of an agent it may
    // not see answers exactly as an unknown task does, so the route cannot be used to probe task ids.
    const [agentId] = await filterAuthorized(context, request, lifecycle.agentsOfTask(taskId))
    const status = agentId === undefined ? false : await lifecycle.cancelTask(taskId, agentId)
    if (status === false) throw new FST_ERR_AGENT_SSE_UNKNOWN_TASK(taskId)
    return status
  })
}
