// The message protocol between agent processes and the server, shared by both sides.
// Every message is one JSON text frame with a `type`; each type has a TypeBox schema, and
// anything else (not JSON, binary, an unknown type, a wrong shape) is rejected by
// `parseMessage`, which never throws: the receiver logs the problem and drops the message.
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

/** Largest frame either side accepts (ws `maxPayload`); a bigger one closes the socket with 1009. */
export const MAX_PAYLOAD_BYTES = 64 * 1024

// The plugin's own rule for agent ids, so every registered agent is reachable over its routes.
export const AgentId = Type.String({ pattern: '^(?!\\.+$)[A-Za-z0-9._:-]{1,128}$' })
const TaskId = Type.String({ minLength: 1, maxLength: 128 })
const RequestId = Type.String({ minLength: 1, maxLength: 128 })
const IntervalSeconds = Type.Integer({ minimum: 1, maximum: 86400 })
const Metrics = Type.Record(Type.String(), Type.Unknown())
const strict = { additionalProperties: false }

/** Agent → server. */
export const AgentMessages = {
  // First message on every connection: who the agent is and the tasks it is still running.
  hello: Type.Object({
    type: Type.Literal('hello'),
    agentId: AgentId,
    tasks: Type.Array(Type.Object({ taskId: TaskId, intervalSeconds: IntervalSeconds }, strict), { maxItems: 64 })
  }, strict),
  // A command (start, stop, change-interval) was carried out.
  ack: Type.Object({ type: Type.Literal('ack'), requestId: RequestId }, strict),
  // A command was refused.
  nack: Type.Object({ type: Type.Literal('nack'), requestId: RequestId, error: Type.String({ maxLength: 1024 }) }, strict),
  // The answer to `current`.
  'current-metrics': Type.Object({ type: Type.Literal('current-metrics'), requestId: RequestId, metrics: Metrics }, strict),
  // One sample of a running task.
  sample: Type.Object({ type: Type.Literal('sample'), taskId: TaskId, metrics: Metrics }, strict)
}

/** Server → agent. Every command carries a `requestId` that the agent's answer repeats. */
export const ServerMessages = {
  // The hello was accepted.
  welcome: Type.Object({ type: Type.Literal('welcome'), agentId: AgentId }, strict),
  start: Type.Object({ type: Type.Literal('start'), requestId: RequestId, taskId: TaskId, intervalSeconds: IntervalSeconds }, strict),
  stop: Type.Object({ type: Type.Literal('stop'), requestId: RequestId, taskId: TaskId }, strict),
  'change-interval': Type.Object({ type: Type.Literal('change-interval'), requestId: RequestId, taskId: TaskId, intervalSeconds: IntervalSeconds }, strict),
  current: Type.Object({ type: Type.Literal('current'), requestId: RequestId }, strict)
}

/**
 * Parses one received frame against a set of schemas (`AgentMessages` or `ServerMessages`).
 * Returns `{ message }` or `{ error }` (a short description fit for a log line); never throws.
 */
export function parseMessage (data, isBinary, schemas) {
  if (isBinary) return { error: 'binary frames are not part of the protocol' }
  const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8')
  if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES) return { error: `message larger than ${MAX_PAYLOAD_BYTES} bytes` }
  let value
  try {
    value = JSON.parse(text)
  } catch {
    return { error: `not JSON: ${JSON.stringify(text.slice(0, 40))}` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof value.type !== 'string') {
    return { error: 'not an object with a string "type"' }
  }
  const schema = Object.hasOwn(schemas, value.type) ? schemas[value.type] : undefined
  if (!schema) return { error: `unknown message type ${JSON.stringify(value.type.slice(0, 40))}` }
  if (!Value.Check(schema, value)) {
    const problems = [...Value.Errors(schema, value)].slice(0, 3).map((e) => `${e.path || '/'}: ${e.message}`)
    return { error: `invalid "${value.type}" message (${problems.join('; ')})` }
  }
  return { message: value }
}

/** Serialises a message (the sender builds it from these schemas, so it is valid by construction). */
export function encode (message) {
  return JSON.stringify(message)
}
