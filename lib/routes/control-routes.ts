import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { FST_ERR_AGENT_SSE_UNKNOWN_TASK } from '../errors.js'
import { agentGuard, assertAuthorized, type RouteContext } from './context.js'
import { AgentParams, ErrorSchema, MetricsSchema, startBody, StreamListSchema, StreamStatusSchema, TaskParams } from './schemas.js'

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
  }, async (request) => {
    const intervalSeconds = request.body?.interval_seconds ?? options.defaultIntervalSeconds
    return lifecycle.hold(request.params.agentId, { intervalSeconds })
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
    schema: { response: { 200: StreamListSchema, ...errors } }
  }, async (request) => {
    const streams = lifecycle.list()
    if (!options.authorizeAgent) return { streams }
    // Only the agents this request may see.
    const allowed = await Promise.all(streams.map((status) => options.authorizeAgent!(request, status.agent_id)))
    return { streams: streams.filter((_status, index) => allowed[index] === true) }
  })

  app.post('/tasks/:taskId/cancel', {
    schema: { params: TaskParams, response: { 200: StreamStatusSchema, ...errors } }
  }, async (request) => {
    const { taskId } = request.params
    const agentId = lifecycle.agentOfTask(taskId)
    if (agentId === null) throw new FST_ERR_AGENT_SSE_UNKNOWN_TASK(taskId)
    await assertAuthorized(context, request, agentId)
    const status = await lifecycle.cancelTask(taskId)
    if (status === false) throw new FST_ERR_AGENT_SSE_UNKNOWN_TASK(taskId)
    return status
  })
}
