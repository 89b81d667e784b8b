import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createConnection, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import type { Test } from 'tap'

/** The redis-server binary; REDIS_SERVER_BIN overrides it for machines where it is elsewhere. */
const binary = process.env.REDIS_SERVER_BIN ?? 'redis-server'

let available: boolean | undefined

/** Whether a redis-server binary can be run here (checked once per process). */
export function redisAvailable (): boolean {
  available ??= spawnSync(binary, ['--version'], { stdio: 'ignore' }).status === 0
  return available
}

/**
 * For `t.test(name, { skip: redisSkip() }, ...)`: false when redis-server is present, else
 * the skip reason. On CI a missing server throws instead: there the cluster tests must run,
 * and a silent skip would hide that they never did.
 */
export function redisSkip (): string | false {
  if (redisAvailable()) return false
  const reason = `${binary} is not installed (e.g. apt-get install redis-server, or set REDIS_SERVER_BIN): skipping the cluster tests`
  const ci = process.env.CI
  if (ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0') {
    throw new Error(`${binary} is required on CI (CI=${ci}) but is not installed; the cluster tests must not be skipped there`)
  }
  return reason
}

export interface RedisServer {
  port: number
  url: string
  /** Everything the current (or last) server process printed. */
  output (): string
  /** SIGKILL, like a crash: nothing is saved; resolves once the process has exited. */
  stop (): Promise<void>
  /** Starts again on the same port (so clients reconnect to it); resolves once it answers. */
  start (): Promise<void>
  restart (): Promise<void>
}

/** A port that was free a moment ago (the callers' startup checks cover the race with parallel test files). */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

/**
 * Asks the server on `port` for its pid with a raw INFO (no client library: no reconnect
 * noise). Comparing the pid with our child's tells "our server is up" apart from "another
 * process (say a parallel test file's Redis) grabbed the port and ours failed to bind".
 */
function serverPid (port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let reply = ''
    const done = (pid: number | null) => { socket.destroy(); resolve(pid) }
    socket.setTimeout(500, () => done(null))
    socket.on('connect', () => socket.write('INFO server\r\n'))
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1')
      if (reply.startsWith('-')) return done(null) // e.g. -LOADING: not ready yet
      const match = /\r\nprocess_id:(\d+)\r\n/.exec(reply)
      if (match) done(Number(match[1]))
    })
    socket.on('error', () => done(null))
  })
}

interface Running {
  child: ChildProcess
  /** Set when the process exited or could not be spawned at all. */
  dead: boolean
  exited: Promise<void>
  output: string
}

function spawnRedis (port: number): Running {
  const child = spawn(binary, [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    // Quiet: no banner or notices, only warnings (kept in `output()`, not printed).
    '--loglevel', 'warning',
    '--logfile', '',
    // Never write into the repository, should anything be dumped.
    '--dir', tmpdir()
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let exited = () => {}
  const running: Running = { child, dead: false, output: '', exited: new Promise((resolve) => { exited = resolve }) }
  const end = () => { running.dead = true; exited() }
  child.once('exit', end)
  // A spawn failure (binary missing) emits 'error' and never 'exit'.
  child.once('error', (err) => { running.output += String(err); end() })
  child.stdout!.on('data', (chunk: Buffer) => { running.output += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { running.output += chunk.toString() })
  return running
}

/** True once this child answers on `port`; false if it exited first (for example the bind failed). */
async function answers (running: Running, port: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (running.dead) return false
    if (await serverPid(port) === running.child.pid) return true
    if (Date.now() > deadline) {
      running.child.kill('SIGKILL')
      throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms:\n${running.output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function kill (running: Running): Promise<void> {
  if (!running.dead) running.child.kill('SIGKILL')
  await running.exited
}

/** A throwaway Redis on a free loopback port, killed in teardown. */
export async function startRedis (t: Test): Promise<RedisServer> {
  let port = 0
  let running: Running | undefined
  // The port can be taken between freePort() and the server's bind: try another one.
  for (let attempt = 1; running === undefined; attempt++) {
    port = await freePort()
    const candidate = spawnRedis(port)
    if (await answers(candidate, port)) running = candidate
    else {
      await kill(candidate)
      if (attempt === 5) throw new Error(`redis-server did not start after ${attempt} attempts; last output:\n${candidate.output}`)
    }
  }
  let current: Running = running
  t.teardown(() => kill(current))

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    output: () => current.output,
    stop: () => kill(current),
    async start () {
      if (!current.dead) return
      // Same port, so it must be ours again; a few tries ride out a slow release of the old socket.
      for (let attempt = 1; ; attempt++) {
        current = spawnRedis(port)
        if (await answers(current, port)) return
        await kill(current)
        if (attempt === 5) throw new Error(`redis-server could not start again on port ${port}:\n${current.output}`)
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt))
      }
    },
    async restart () {
      await server.stop()
      await server.start()
    }
  }
  return server
}
