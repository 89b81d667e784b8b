// End to end: examples/remote-agents as real processes over real sockets. The server
// (server.js, with the WebSocket adapter) and agent processes (agent.js) are spawned; the
// test talks to them over HTTP/SSE and raw WebSocket, and reads what they print.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import WebSocket, { WebSocketServer, type RawData } from 'ws'
import { getJson, openSse, waitFor } from './helpers/server.js'

interface Proc {
  child: ChildProcessWithoutNullStreams
  output (): string
  waitForOutput (pattern: string | RegExp, what: string, timeoutMs?: number): Promise<RegExpExecArray>
  kill (signal?: NodeJS.Signals): Promise<void>
  alive (): boolean
}

/** A node process running one of the example's scripts; killed (SIGKILL) in teardown if still running. */
function startProcess (t: Test, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, args, { env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const alive = () => child.exitCode === null && child.signalCode === null
  const proc: Proc = {
    child,
    output: () => output,
    alive,
    async waitForOutput (pattern, what, timeoutMs = 10000) {
      const regexp = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern
      let match: RegExpExecArray | null = null
      try {
        await waitFor(() => (match = regexp.exec(output)) !== null, what, timeoutMs)
      } catch (err) {
        throw new Error(`${(err as Error).message}; output so far:\n${output}`)
      }
      return match!
    },
    async kill (signal = 'SIGKILL') {
      if (alive()) child.kill(signal)
      await exited
    }
  }
  t.teardown(() => proc.kill('SIGKILL'))
  return proc
}

async function startServer (t: Test, env: Record<string, string> = {}) {
  const proc = startProcess(t, ['examples/remote-agents/server.js'], { PORT: '0', HOST: '127.0.0.1', STOP_DELAY_MS: '300', ...env })
  const [, base] = await proc.waitForOutput(/server on (http:\/\/\S+)/, 'the server to print its URL', 15000)
  const port = Number(new URL(base!).port)
  return { ...proc, base: base!, api: `${base}/api`, port, wsUrl: `ws://127.0.0.1:${port}/agents/ws` }
}

async function startAgent (t: Test, id: string, wsUrl: string, extraArgs: string[] = []) {
  const proc = startProcess(t, ['examples/remote-agents/agent.js', '--id', id, '--server', wsUrl, '--max-backoff-ms', '1000', ...extraArgs])
  return proc
}

async function startRegisteredAgent (t: Test, id: string, server: { api: string, wsUrl: string }) {
  const agent = await startAgent(t, id, server.wsUrl)
  await agent.waitForOutput(`agent ${id}: registered with`, `agent ${id} to register`)
  // The server side of the registration is visible as the agent's status (404 while not connected).
  await waitFor(async () => (await getJson(`${server.api}/agents/${id}/status`)).statusCode === 200, `the server to know agent ${id}`)
  return agent
}

const taskStartedBy = (id: string) => new RegExp(`agent ${id}: collecting started \\(task ([0-9a-f-]+)`)
const count = (text: string, part: string) => text.split(part).length - 1
/** The `msg` of every complete JSON (pino) line in a server's output, one a line. */
function logMessages (output: string): string {
  const messages: string[] = []
  for (const line of output.split('\n').slice(0, -1)) {
    if (line.startsWith('{')) messages.push(JSON.parse(line).msg)
  }
  return messages.join('\n')
}

t.test('one SSE client: only its agent collects, and stops after the grace window once the client leaves', async (t) => {
  const server = await startServer(t)
  const [edge1, edge2] = await Promise.all([startRegisteredAgent(t, 'edge-1', server), startRegisteredAgent(t, 'edge-2', server)])

  t.match((await getJson(`${server.api}/agents/edge-1/status`)).body, { agent_id: 'edge-1', streaming_active: false, state: 'idle' })
  t.equal((await getJson(`${server.api}/agents/edge-9/status`)).statusCode, 404, 'an agent that is not connected is unknown')
  const current = await getJson(`${server.api}/agents/edge-2/metrics/current`)
  t.equal(current.statusCode, 200, 'current metrics: a request/response over the socket')
  t.match(current.body, { agent_id: 'edge-2', cpu_percent: Number, load_1m: Number, memory_percent: Number, process_rss_mb: Number })

  const client = await openSse(`${server.api}/agents/edge-1/metrics/stream?interval_seconds=1`)
  t.equal(client.statusCode, 200)
  const first = JSON.parse((await client.next((e) => e.event === 'metrics', 'a first sample')).data)
  t.match(first, { agent_id: 'edge-1', cpu_percent: Number, cpu_per_core: Array, load_average: Array, memory_used_mb: Number, process_rss_mb: Number })
  const [, taskId] = await edge1.waitForOutput(taskStartedBy('edge-1'), 'edge-1 to log collecting started')
  t.match((await getJson(`${server.api}/agents/edge-1/status`)).body, { streaming_active: true, state: 'active', sse_clients: 1, task_id: taskId, interval_seconds: 1 })
  t.match((await getJson(`${server.api}/streams`)).body, { streams: [{ agent_id: 'edge-1', task_id: taskId }] })

  client.close()
  const leftAt = Date.now()
  await edge1.waitForOutput(`agent edge-1: collecting stopped (task ${taskId})`, 'edge-1 to log collecting stopped')
  t.ok(Date.now() - leftAt >= 280, `stopped after the 300 ms grace window (${Date.now() - leftAt} ms)`)
  await waitFor(async () => (await getJson(`${server.api}/agents/edge-1/status`)).body.streaming_active === false, 'edge-1 to be idle')
  t.equal(count(edge1.output(), 'collecting started'), 1, 'edge-1 collected once')
  t.notMatch(edge2.output(), /collecting/, 'edge-2 never collected')
  t.ok(server.alive() && edge1.alive() && edge2.alive())
})

t.test('the server serves the dashboard, listing the expected agents and every connected one', async (t) => {
  const server = await startServer(t, { EXPECTED_AGENTS: 'edge-1,edge-2' })
  const page = await fetch(`${server.base}/`)
  t.equal(page.status, 200, 'GET / is the fleet page')
  t.match(page.headers.get('content-type'), /text\/html/)
  t.match(await page.text(), /fleet\.js/)
  t.same((await getJson(`${server.base}/example/agents`)).body.agents, ['edge-1', 'edge-2'], 'expected agents, before any connects')
  await startRegisteredAgent(t, 'edge-7', server)
  t.same((await getJson(`${server.base}/example/agents`)).body.agents, ['edge-1', 'edge-2', 'edge-7'], 'and the one that connected')
})

t.test('an agent process killed mid-stream ends its SSE clients with agent-offline', async (t) => {
  const server = await startServer(t)
  const edge1 = await startRegisteredAgent(t, 'edge-1', server)
  const clients = await Promise.all([1, 2].map((interval) => openSse(`${server.api}/agents/edge-1/metrics/stream?interval_seconds=${interval}`)))
  await Promise.all(clients.map((client) => client.next((e) => e.event === 'metrics', 'a sample')))
  t.match((await getJson(`${server.api}/agents/edge-1/status`)).body, { streaming_active: true, sse_clients: 2 })

  await edge1.kill('SIGKILL')
  for (const client of clients) {
    const end = await client.next((e) => e.event === 'end', 'event: end')
    t.same(JSON.parse(end.data), { reason: 'agent-offline' })
    await waitFor(() => client.ended, 'the SSE response to end')
  }
  t.same((await getJson(`${server.api}/streams`)).body, { streams: [], next_cursor: null }, 'nothing streams any more')
  t.equal((await getJson(`${server.api}/agents/edge-1/status`)).statusCode, 404, 'the offline agent is unknown')
  await server.waitForOutput(/agent edge-1 went offline \(socket closed[^)]*\); ended 1 task/, 'the server to log the agent offline')

  // The same agent id from a new process: idle, nothing to stop, and it streams again on demand.
  const again = await startRegisteredAgent(t, 'edge-1', server)
  t.match((await getJson(`${server.api}/agents/edge-1/status`)).body, { streaming_active: false, state: 'idle', sse_clients: 0 })
  const client = await openSse(`${server.api}/agents/edge-1/metrics/stream?interval_seconds=1`)
  await client.next((e) => e.event === 'metrics', 'a sample from the new process')
  client.close()
  await again.waitForOutput('agent edge-1: collecting stopped', 'the new process to stop collecting')
  t.ok(server.alive())
})

t.test('a restarted server stops the task an agent kept running (orphan)', async (t) => {
  const first = await startServer(t)
  const edge1 = await startRegisteredAgent(t, 'edge-1', first)
  const client = await openSse(`${first.api}/agents/edge-1/metrics/stream?interval_seconds=1`)
  await client.next((e) => e.event === 'metrics', 'a sample')
  const [, taskId] = await edge1.waitForOutput(taskStartedBy('edge-1'), 'edge-1 to log collecting started')

  await first.kill('SIGKILL')
  await waitFor(() => client.ended, 'the SSE response to be cut')
  await edge1.waitForOutput('agent edge-1: disconnected', 'edge-1 to notice the server is gone')
  t.notMatch(edge1.output(), /collecting stopped/, 'the agent keeps its task while the server is away')

  const second = await startServer(t, { PORT: String(first.port) })
  t.equal(second.port, first.port, 'the new server listens on the same port')
  await edge1.waitForOutput(/registered with \S+ \(reported 1 running task\(s\)\)/, 'edge-1 to reconnect and report its task')
  await edge1.waitForOutput(`agent edge-1: collecting stopped (task ${taskId})`, 'edge-1 to be told to stop the orphan')
  await second.waitForOutput(new RegExp(`orphan\\w* metrics streaming task ${taskId} of agent edge-1`, 'i'), 'the new server to log the orphan')
  t.equal(count(edge1.output(), 'collecting started'), 1)
  t.match((await getJson(`${second.api}/agents/edge-1/status`)).body, { streaming_active: false, state: 'idle' })
  t.same((await getJson(`${second.api}/streams`)).body, { streams: [], next_cursor: null })
  t.ok(second.alive() && edge1.alive())
})

t.test('malformed, unknown and oversized messages from an agent socket do not crash the server', async (t) => {
  const server = await startServer(t)
  const ws = new WebSocket(server.wsUrl)
  t.teardown(() => ws.terminate())
  const received: unknown[] = []
  ws.on('message', (data: RawData) => received.push(JSON.parse(data.toString())))
  await once(ws, 'open')

  const garbage: Array<string | Buffer> = [
    'garbage',
    '{"type": "hello", ',
    '[]',
    'null',
    '{"kind": "hello"}',
    JSON.stringify({ type: 'launch' }),
    JSON.stringify({ type: 'hello' }),
    JSON.stringify({ type: 'hello', agentId: 'bad id!', tasks: [] }),
    JSON.stringify({ type: 'sample', taskId: 't', metrics: {} }), // valid, but before any hello
    Buffer.from([0xde, 0xad, 0xbe, 0xef])
  ]
  for (const message of garbage) ws.send(message)
  ws.send(JSON.stringify({ type: 'hello', agentId: 'raw-1', tasks: [] }))
  await waitFor(() => received.length > 0, 'a welcome')
  t.same(received, [{ type: 'welcome', agentId: 'raw-1' }], 'nothing but a welcome, for the one valid hello')
  t.equal((await getJson(`${server.api}/agents/raw-1/status`)).statusCode, 200)

  const afterHello = [
    JSON.stringify({ type: 'ack', requestId: 'nobody-asked' }),
    JSON.stringify({ type: 'sample', taskId: 'not-a-task-of-this-server', metrics: { cpu_percent: 1 } }),
    JSON.stringify({ type: 'sample', taskId: 't', metrics: 'not an object' }),
    JSON.stringify({ type: 'hello', agentId: 'raw-1', tasks: [], extra: true }),
    JSON.stringify({ type: 'hello', agentId: 'raw-2', tasks: [] })
  ]
  for (const message of afterHello) ws.send(message)
  // Once the socket is shut for an oversized frame, every message before it has been handled.
  ws.send(JSON.stringify({ type: 'sample', taskId: 't', metrics: { blob: 'x'.repeat(70 * 1024) } }))
  const [code] = await once(ws, 'close')
  t.equal(code, 1009, 'an oversized frame closes the socket with 1009 (message too big)')

  t.ok(server.alive(), 'the server is still running')
  t.equal((await getJson(`${server.api}/streams`)).statusCode, 200, 'and still answers')
  await waitFor(async () => (await getJson(`${server.api}/agents/raw-1/status`)).statusCode === 404, 'raw-1 to be offline')
  t.equal((await getJson(`${server.api}/agents/raw-2/status`)).statusCode, 404, 'a second hello registers nothing')
  // The logs come through a pipe that may lag behind the socket: wait for them.
  await waitFor(() => /Max payload size exceeded/.test(logMessages(server.output())), 'the oversized frame to be logged')
  const output = logMessages(server.output())
  t.equal(count(output, 'dropped a malformed message'), 11, 'each malformed message is logged')
  t.match(output, /dropped "sample" from [\d.:]+: hello expected first/)
  t.match(output, /agent raw-1: "ack" for no pending request, dropped/)
  t.match(output, /agent raw-1: second hello on one connection, dropped/)
  t.match(output, /Max payload size exceeded/)

  // A well-behaved agent still connects and streams afterwards.
  const edge1 = await startRegisteredAgent(t, 'edge-1', server)
  const client = await openSse(`${server.api}/agents/edge-1/metrics/stream?interval_seconds=1`)
  await client.next((e) => e.event === 'metrics', 'a sample')
  client.close()
  await edge1.waitForOutput('agent edge-1: collecting stopped', 'edge-1 to stop collecting')
})

t.test('the agent drops malformed commands, survives an oversized frame and reports its task on reconnect', async (t) => {
  // A stand-in server: the test speaks the protocol to a real agent process.
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await once(wss, 'listening')
  t.teardown(() => new Promise<void>((resolve) => {
    for (const client of wss.clients) client.terminate()
    wss.close(() => resolve())
  }))
  const { port } = wss.address() as AddressInfo
  const connections: Array<{ socket: WebSocket, messages: any[] }> = []
  wss.on('connection', (socket) => {
    const connection = { socket, messages: [] as any[] }
    connections.push(connection)
    socket.on('message', (data: RawData) => connection.messages.push(JSON.parse(data.toString())))
  })
  const agent = await startAgent(t, 'edge-5', `ws://127.0.0.1:${port}`)
  await waitFor(() => connections[0]?.messages.length === 1, 'the hello', 10000)
  const { socket, messages } = connections[0]!
  t.same(messages[0], { type: 'hello', agentId: 'edge-5', tasks: [] })

  const garbage: Array<string | Buffer> = [
    'garbage',
    '{"type":',
    JSON.stringify({ type: 'self-destruct' }),
    JSON.stringify({ type: 'start', requestId: 'r0', taskId: 'task-0' }),
    JSON.stringify({ type: 'start', requestId: 'r0', taskId: 'task-0', intervalSeconds: 0 }),
    Buffer.from([1, 2, 3])
  ]
  for (const message of garbage) socket.send(message)
  socket.send(JSON.stringify({ type: 'start', requestId: 'r1', taskId: 'task-1', intervalSeconds: 1 }))
  await waitFor(() => messages.some((m) => m.type === 'ack' && m.requestId === 'r1'), 'the ack of start')
  await waitFor(() => messages.some((m) => m.type === 'sample' && m.taskId === 'task-1'), 'a sample of task-1')
  t.match(messages.find((m) => m.type === 'sample').metrics, { agent_id: 'edge-5', cpu_percent: Number, process_rss_mb: Number })
  t.notOk(messages.some((m) => m.requestId === 'r0'), 'the malformed start got no answer')
  t.notMatch(agent.output(), /task-0/, 'and started nothing')
  await waitFor(() => count(agent.output(), 'dropped a malformed message from the server') === garbage.length, 'each malformed message to be logged')

  socket.send('x'.repeat(70 * 1024))
  await waitFor(() => connections.length === 2 && connections[1]!.messages.length > 0, 'the agent to reconnect', 10000)
  t.same(connections[1]!.messages[0], { type: 'hello', agentId: 'edge-5', tasks: [{ taskId: 'task-1', intervalSeconds: 1 }] }, 'the reconnected agent reports its running task')
  const again = connections[1]!
  again.socket.send(JSON.stringify({ type: 'stop', requestId: 'r2', taskId: 'task-1' }))
  await waitFor(() => again.messages.some((m) => m.type === 'ack' && m.requestId === 'r2'), 'the ack of stop')
  await agent.waitForOutput('agent edge-5: collecting stopped (task task-1)', 'the agent to stop collecting')
  t.ok(agent.alive(), 'the agent is still running')
})
