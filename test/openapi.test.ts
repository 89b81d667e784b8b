import SwaggerParser from '@apidevtools/swagger-parser'
import swagger, { type FastifyDynamicSwaggerOptions } from '@fastify/swagger'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import agentSse from '../lib/index.js'
import { startServer, waitFor } from './helpers/server.js'
import { TestAdapter } from './helpers/test-adapter.js'

interface Media { schema: Record<string, unknown> }
interface Operation {
  operationId?: string
  summary?: string
  description?: string
  tags?: string[]
  requestBody?: { required?: boolean, description?: string, content: Record<string, Media> }
  responses: Record<string, { description: string, content?: Record<string, Media> }>
}
interface Document {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, { title?: string, description?: string }> }
}

// The setup the README shows: components named by their `$id`, and the start route's body documented as
// optional (@fastify/swagger marks every body that has a schema as required, fastify/fastify-swagger#903).
const readmeSwaggerOptions: FastifyDynamicSwaggerOptions = {
  openapi: { info: { title: 'Agents', version: '1.0.0' } },
  refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` },
  transformObject (documentObject) {
    if (!('openapiObject' in documentObject)) return documentObject.swaggerObject
    const { openapiObject } = documentObject
    for (const path of Object.values(openapiObject.paths ?? {}) as Array<{ post?: Operation }>) {
      if (path.post?.operationId === 'startAgentMetricsStreaming') path.post.requestBody!.required = false
    }
    return openapiObject
  }
}

async function generate (t: Test, swaggerOptions: FastifyDynamicSwaggerOptions): Promise<Document> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(swagger, swaggerOptions)
  await app.register(agentSse, { adapter: new TestAdapter(), prefix: '/api' })
  await app.ready()
  const doc = app.swagger() as unknown as Document
  // The validator dereferences in place: it gets a copy, so the assertions below see the document as served.
  await SwaggerParser.validate(structuredClone(doc) as never)
  return doc
}

const operations = (doc: Document) => Object.entries(doc.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })))

t.test('the OpenAPI document validates, and every route has a tag, an operationId and a summary', async (t) => {
  const doc = await generate(t, readmeSwaggerOptions)
  t.same(Object.fromEntries(operations(doc).map(({ route, operation }) => [route, operation.operationId])), {
    'GET /api/agents/{agentId}/metrics/stream': 'streamAgentMetrics',
    'GET /api/metrics/stream': 'streamFleetMetrics',
    'POST /api/agents/{agentId}/metrics/streaming/start': 'startAgentMetricsStreaming',
    'POST /api/agents/{agentId}/metrics/streaming/stop': 'stopAgentMetricsStreaming',
    'GET /api/agents/{agentId}/metrics/current': 'getAgentCurrentMetrics',
    'GET /api/agents/{agentId}/status': 'getAgentStreamStatus',
    'GET /api/streams': 'listAgentStreams',
    'POST /api/tasks/{taskId}/cancel': 'cancelAgentStreamTask'
  })
  for (const { route, operation } of operations(doc)) {
    t.same(operation.tags, ['agent-metrics'], `${route}: tag`)
    t.match(operation.summary, /\w/, `${route}: summary`)
    t.same(Object.keys(operation.responses).sort(), ['200', '4XX', '5XX'], `${route}: responses`)
    for (const status of ['4XX', '5XX']) {
      t.same(operation.responses[status]!.content, { 'application/json': { schema: { $ref: '#/components/schemas/AgentSseError' } } }, `${route}: ${status}`)
    }
  }
})

t.test('both stream routes answer 200 text/event-stream, with their events in the description', async (t) => {
  const doc = await generate(t, readmeSwaggerOptions)
  const streams: Array<[string, string[]]> = [
    ['/api/agents/{agentId}/metrics/stream', ['metrics', 'gap', 'end', 'error']],
    ['/api/metrics/stream', ['metrics', 'status', 'gap', 'end', 'error']]
  ]
  for (const [path, events] of streams) {
    const operation = doc.paths[path]!.get!
    t.same(operation.responses['200']!.content, { 'text/event-stream': { schema: { type: 'string', description: 'Server-Sent Events' } } }, path)
    const rows = operation.description!.split('\n').filter((line) => line.startsWith('| `'))
    t.same(rows.map((row) => row.split('`')[1]), events, `${path}: one table row per event`)
    t.match(operation.description, /\| `metrics` \| decimal integer/, `${path}: metrics carry an id`)
  }
  t.match(doc.paths['/api/metrics/stream']!.get!.description, /"agent_id"/, 'fleet events name their agent')
})

t.test('the shared schemas are components named by their $id, referenced by every route', async (t) => {
  const doc = await generate(t, readmeSwaggerOptions)
  t.same(Object.keys(doc.components.schemas).sort(), ['AgentSseError', 'AgentSseMetrics', 'AgentSseStreamList', 'AgentSseStreamStatus'])
  t.notMatch(JSON.stringify(doc), /def-\d/, 'no def-N name anywhere')
  const status = { 'application/json': { schema: { $ref: '#/components/schemas/AgentSseStreamStatus' } } }
  for (const path of ['/api/agents/{agentId}/metrics/streaming/start', '/api/agents/{agentId}/metrics/streaming/stop', '/api/tasks/{taskId}/cancel']) {
    t.same(doc.paths[path]!.post!.responses['200']!.content, status, path)
  }
  t.same(doc.paths['/api/agents/{agentId}/status']!.get!.responses['200']!.content, status)
  t.same(doc.paths['/api/streams']!.get!.responses['200']!.content, { 'application/json': { schema: { $ref: '#/components/schemas/AgentSseStreamList' } } })
  t.match(doc.components.schemas.AgentSseStreamList, { properties: { streams: { items: { $ref: '#/components/schemas/AgentSseStreamStatus' } } } })
  t.match(doc.components.schemas.AgentSseError, { required: ['statusCode', 'error', 'message'], properties: { code: { type: 'string' } } })
  t.match(doc.components.schemas.AgentSseStreamStatus, { properties: { state: { type: 'string', enum: ['idle', 'starting', 'active', 'lingering', 'stopping'] } } })
})

t.test('the start body is optional: nullable, only interval_seconds, not required', async (t) => {
  const doc = await generate(t, readmeSwaggerOptions)
  const body = doc.paths['/api/agents/{agentId}/metrics/streaming/start']!.post!.requestBody!
  t.equal(body.required, false)
  t.match(body.description, /^Optional/)
  t.match(body.content['application/json']!.schema, {
    type: 'object',
    nullable: true,
    properties: { interval_seconds: { type: 'integer', minimum: 1, maximum: 3600 } },
    additionalProperties: { not: {} }
  })
})

t.test("with @fastify/swagger's defaults the document validates and the components keep their names as titles", async (t) => {
  const doc = await generate(t, { openapi: { info: { title: 'Agents', version: '1.0.0' } } })
  t.same(Object.values(doc.components.schemas).map((schema) => schema.title).sort(), ['AgentSseError', 'AgentSseMetrics', 'AgentSseStreamList', 'AgentSseStreamStatus'])
  for (const { route, operation } of operations(doc)) t.ok(operation.operationId && operation.summary && operation.tags?.length, route)
})

t.test('a bad start body answers one clear 400 message and starts nothing', async (t) => {
  const { json, adapter } = await startServer(t, { minIntervalSeconds: 2, maxIntervalSeconds: 60 })
  const start = (body: unknown) => json('/agents/agent1/metrics/streaming/start', 'POST', body)
  const badRequest = (message: string) => ({ statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message })
  const cases: Array<[unknown, string]> = [
    [{ intervalSeconds: 2 }, 'body has unknown property "intervalSeconds"'],
    [{ interval_seconds: 5, extra: true }, 'body has unknown property "extra"'],
    [{ interval_seconds: 1 }, 'body/interval_seconds must be an integer from 2 to 60'],
    [{ interval_seconds: 61 }, 'body/interval_seconds must be an integer from 2 to 60'],
    [{ interval_seconds: 2.5 }, 'body/interval_seconds must be an integer from 2 to 60'],
    [{ interval_seconds: 'abc' }, 'body/interval_seconds must be an integer from 2 to 60'],
    ['hello', 'body must be a JSON object or empty'],
    [[5], 'body must be a JSON object or empty']
  ]
  for (const [body, message] of cases) {
    const answer = await start(body)
    t.equal(answer.statusCode, 400, JSON.stringify(body))
    t.same(answer.body, badRequest(message), JSON.stringify(body))
  }
  t.equal(adapter.startCalls.length, 0)
})

t.test('no body, null and {} start at the default interval; interval_seconds tunes it', async (t) => {
  const { json, adapter } = await startServer(t, { defaultIntervalSeconds: 7 })
  const path = '/agents/agent1/metrics/streaming/start'
  for (const body of [undefined, null, {}]) {
    const answer = await json(path, 'POST', body)
    t.equal(answer.statusCode, 200, JSON.stringify(body))
    t.match(answer.body, { state: 'active', manual_hold: true, interval_seconds: 7 }, JSON.stringify(body))
  }
  t.equal(adapter.startCalls.length, 1, 'one hold, started once')
  t.match((await json(path, 'POST', { interval_seconds: 3 })).body, { interval_seconds: 3 })
})

t.test('with @fastify/swagger registered, both stream routes still stream (the 200 schema is documentation only)', async (t) => {
  const { sse, adapter } = await startServer(t, {}, async (app) => { await app.register(swagger, readmeSwaggerOptions) })
  const single = await sse('/agents/agent1/metrics/stream')
  const fleet = await sse('/metrics/stream?agents=agent1')
  for (const stream of [single, fleet]) {
    t.equal(stream.statusCode, 200)
    t.match(stream.headers['content-type'], /^text\/event-stream/)
  }
  await waitFor(() => adapter.liveTasks.size === 1, 'the agent streams')
  adapter.push('agent1', { cpu: 1 })
  t.same(JSON.parse((await single.next((event) => event.event === 'metrics')).data), { cpu: 1 })
  t.same(JSON.parse((await fleet.next((event) => event.event === 'metrics')).data), { agent_id: 'agent1', metrics: { cpu: 1 } })
  single.close()
  fleet.close()
})
