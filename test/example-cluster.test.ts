import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { Agent } from 'undici'
import { redisSkip } from './helpers/redis-server.js'
import { getJson, openSse, waitFor } from './helpers/server.js'

/** Whether a process with this pid still exists (signal 0 only checks). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

// About 10 s; the margin is for a machine at half this one's speed.
t.setTimeout(120_000)

// examples/cluster/README.md starts with `node examples/cluster/start.js`: run it as a real process
// tree (a throwaway redis-server and two instances), on ephemeral ports.
t.test('the cluster example: clients on both instances share one agent stream, and SIGTERM stops the whole tree', { skip: redisSkip() }, async (t) => {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT_A: '0', PORT_B: '0', HOST: '127.0.0.1' }
  delete env.REDIS_URL // the example must start (and stop) its own redis-server
  const child = spawn(process.execPath, ['examples/cluster/start.js'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  const pids: number[] = []
  const dispatcher = new Agent()
  t.teardown(async () => {
    await dispatcher.destroy()
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    }
    // Its children run in their own process groups: never leave one behind, whatever happened above.
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL')
  })

  const instanceLine = (id: string) => new RegExp(`^ {2}instance ${id} \\(pid (\\d+)\\): (http://\\S+)/$`, 'm')
  const redisLine = /\(redis-server pid (\d+), stopped on exit\)/
  const withOutput = (err: Error) => { throw new Error(`${err.message}; the example printed:\n${output}`) }
  await waitFor(() => instanceLine('a').test(output) && instanceLine('b').test(output) && redisLine.test(output), 'the example to print both URLs', 30_000).catch(withOutput)
  const [, pidA, originA] = instanceLine('a').exec(output)!
  const [, pidB, originB] = instanceLine('b').exec(output)!
  const redisPid = Number(redisLine.exec(output)![1])
  pids.push(Number(pidA), Number(pidB), redisPid)
  t.not(originA, originB, 'two instances, two URLs')

  for (const [origin, id] of [[originA, 'a'], [originB, 'b']] as const) {
    t.match((await getJson(`${origin}/example/agents`, 'GET', undefined, {}, dispatcher)).body, { agents: ['local', 'edge-1', 'edge-2', 'edge-3'], instance_id: id }, `instance ${id} serves the dashboard's agent list`)
    const page = await fetch(`${origin}/`)
    t.equal(page.status, 200, `instance ${id} serves the dashboard`)
    await page.arrayBuffer()
  }

  const path = '/api/agents/edge-1/metrics/stream?interval_seconds=1'
  const onA = await openSse(originA + path, {}, dispatcher)
  const onB = await openSse(originB + path, {}, dispatcher)
  t.teardown(() => { onA.close(); onB.close() })
  t.equal(onA.statusCode, 200, 'instance a opens the stream')
  t.equal(onB.statusCode, 200, 'instance b opens the stream')

  // Both instances agree within one renewal (a second with the example's 3000 ms lease).
  const statusOf = async (origin: string) => (await getJson(`${origin}/api/agents/edge-1/status`, 'GET', undefined, {}, dispatcher)).body
  let statuses: Array<Record<string, unknown>> = []
  await waitFor(async () => {
    statuses = [await statusOf(originA), await statusOf(originB)]
    return statuses.every((status) => status.sse_clients === 2 && status.state === 'active' && typeof status.owner === 'string') &&
      statuses[0]!.owner === statuses[1]!.owner && statuses[0]!.task_id === statuses[1]!.task_id
  }, 'both instances to report one owner and 2 SSE clients', 15_000).catch((err: Error) => withOutput(new Error(`${err.message}; last seen ${JSON.stringify(statuses)}`)))
  const [statusA, statusB] = statuses as [Record<string, unknown>, Record<string, unknown>]
  t.match(statusA, { sse_clients: 2, streaming_active: true, state: 'active', owner: /^[ab]$/, task_id: String }, 'instance a: the cluster-wide status')
  t.equal(statusB.owner, statusA.owner, 'instance b names the same owner')
  t.equal(statusB.task_id, statusA.task_id, 'and the same task')
  t.equal(statusB.sse_clients, 2, 'and counts both clients')

  // A sample the owner's task produces after both clients joined reaches both, with the same event id.
  const fromA = await onA.next((event) => event.event === 'metrics' && JSON.parse(event.data).task_id === statusA.task_id, 'a sample of the shared task on instance a')
  const fromB = await onB.next((event) => event.event === 'metrics' && event.id === fromA.id, `sample ${fromA.id} on instance b`)
  t.equal(fromB.data, fromA.data, 'the same sample on both instances')
  t.match(JSON.parse(fromA.data), { agent_id: 'edge-1', cpu_percent: Number, task_id: statusA.task_id, collected_by: statusA.owner })
  t.equal((output.match(/agent edge-1: collecting started/g) ?? []).length, 1, 'one agent task in the whole cluster')

  child.kill('SIGTERM')
  const exitTimer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const [code, signal] = await exited
  clearTimeout(exitTimer)
  t.same({ code, signal }, { code: 0, signal: null }, 'start.js exits cleanly on SIGTERM')
  if (code !== 0 || signal !== null) t.comment(output)
  for (const [client, id] of [[onA, 'a'], [onB, 'b']] as const) {
    const end = await client.next((event) => event.event === 'end', `event: end on instance ${id}'s client`)
    t.same(JSON.parse(end.data), { reason: 'server-shutdown' }, `instance ${id} ended its client with server-shutdown`)
  }
  t.match(output, /\[a\] +exited \(code 0\)/, 'instance a closed gracefully')
  t.match(output, /\[b\] +exited \(code 0\)/, 'instance b closed gracefully')
  for (const pid of pids) t.notOk(alive(pid), `process ${pid} is gone`)
})
