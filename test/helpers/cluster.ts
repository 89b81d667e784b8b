import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { Agent } from 'undici'
import { CLUSTER_TEST_LEASE_MS, startRedisTarget, type RedisTarget } from './cluster-app.js'
import { startRecorder, type Recorder } from './recorder.js'
import { getJson, openSse, waitFor, type LogRecord } from './server.js'

const fixture = fileURLToPath(new URL('../fixtures/cluster-instance.js', import.meta.url))

export interface InstanceOptions {
  /** A standalone redis-server's URL; or `redis`. */
  redisUrl?: string
  /** The redis-server or Redis Cluster to coordinate through (its `env` goes to the process). */
  redis?: RedisTarget
  recorderUrl: string
  instanceId: string
  /** Default CLUSTER_TEST_LEASE_MS. */
  leaseMs?: number
  stopDelayMs?: number
  sampleMs?: number
  keyPrefix?: string
  adapterTimeoutMs?: number
  /** Extra environment for the process (e.g. FAIL_STOPS). */
  env?: Record<string, string>
}

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

export type Instance = Awaited<ReturnType<typeof startInstance>>

/**
 * Runs test/fixtures/cluster-instance.js as a real process (one cluster member), killed in
 * teardown. `logs` are its JSON log lines as they arrive (Fastify's and the plugin's).
 */
export async function startInstance (t: Test, options: InstanceOptions) {
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl }),
    ...options.redis?.env,
    RECORDER_URL: options.recorderUrl,
    INSTANCE_ID: options.instanceId,
    ...options.env
  }
  const optional = { LEASE_MS: options.leaseMs ?? CLUSTER_TEST_LEASE_MS, STOP_DELAY_MS: options.stopDelayMs, SAMPLE_MS: options.sampleMs, KEY_PREFIX: options.keyPrefix, ADAPTER_TIMEOUT_MS: options.adapterTimeoutMs }
  for (const [name, value] of Object.entries(optional)) if (value !== undefined) env[name] = String(value)
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [fixture], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  child.stdin.end()

  let exit: Exit | undefined
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => { exit = { code, signal }; resolve(exit) }))
  let output = ''
  let partial = ''
  const logs: LogRecord[] = []
  child.stdout.on('data', (chunk: Buffer) => {
    const text = chunk.toString()
    output += text
    // Chunks need not end on a line boundary: keep the tail for the next one.
    const lines = (partial + text).split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      try { logs.push(JSON.parse(line)) } catch { /* not a JSON line */ }
    }
  })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })

  // SIGSTOP-ed by a test? It must get SIGCONT before anything but SIGKILL is delivered.
  let paused = false
  const signal = (name: NodeJS.Signals) => {
    if (exit !== undefined) return
    if (name === 'SIGSTOP') paused = true
    if (name === 'SIGCONT') paused = false
    child.kill(name)
  }
  // Per instance, destroyed before the kill: undici would otherwise keep sockets to a dead process.
  const dispatcher = new Agent()
  t.teardown(async () => {
    await dispatcher.destroy()
    if (exit === undefined) {
      if (paused) signal('SIGCONT')
      signal('SIGKILL')
      await exited
    }
  })

  let origin = ''
  await waitFor(() => {
    if (exit !== undefined) throw new Error(`instance ${options.instanceId} exited (${JSON.stringify(exit)}) before listening:\n${output}`)
    const banner = logs.find((line) => typeof line.listening === 'string')
    if (banner) origin = banner.listening as string
    return banner !== undefined
  }, `instance ${options.instanceId} to listen`, 20_000)

  return {
    id: options.instanceId,
    origin,
    child,
    logs,
    /** Everything it printed so far, stdout and stderr. */
    output: () => output,
    sse: (path: string, headers: Record<string, string> = {}) => openSse(origin + path, headers, dispatcher),
    json: (path: string, method: 'GET' | 'POST' = 'GET', body?: unknown) => getJson(origin + path, method, body, {}, dispatcher),
    status: async (agentId: string) => (await getJson(`${origin}/agents/${agentId}/status`, 'GET', undefined, {}, dispatcher)).body,
    /** Sends a signal; SIGSTOP/SIGCONT freeze and thaw it (a stalled instance whose lease runs out). */
    kill: signal,
    /** Graceful stop (SIGTERM, thawed first if paused); resolves with how it exited. */
    async stop (): Promise<Exit> {
      if (paused) signal('SIGCONT')
      signal('SIGTERM')
      return exited
    },
    waitExit: () => exited
  }
}

export interface ClusterOptions extends Partial<Omit<InstanceOptions, 'redisUrl' | 'redis' | 'recorderUrl' | 'instanceId'>> {
  /** Reuse this Redis instead of starting one (of AGENT_SSE_REDIS_TARGET's kind: a redis-server or a Redis Cluster). */
  redis?: RedisTarget
}

/** Redis (unless given), the recorder and `n` instances with ids a, b, c, ... started in parallel. */
export async function startCluster (t: Test, n: number, options: ClusterOptions = {}): Promise<{ redis: RedisTarget, recorder: Recorder, instances: Instance[] }> {
  const { redis: given, ...instanceOptions } = options
  const [redis, recorder] = await Promise.all([given ?? startRedisTarget(t), startRecorder(t)])
  const ids = Array.from({ length: n }, (_, index) => String.fromCharCode(97 + index))
  const instances = await Promise.all(ids.map((instanceId) =>
    startInstance(t, { ...instanceOptions, redis, recorderUrl: recorder.url, instanceId })))
  return { redis, recorder, instances }
}
