// Runs the cluster example: a Redis and two instances of instance.js on it, each serving the
// dashboard, and prefixes each one's output. Ctrl-C (or SIGTERM) stops them all.
//
//   node examples/cluster/start.js        (or: npm run example:cluster)
//
// Without REDIS_URL it starts a throwaway redis-server on a free port (stopped on exit);
// PORT_A and PORT_B (3001, 3002; 0 = any free port), HOST, LEASE_MS, STOP_DELAY_MS,
// KEY_PREFIX and LOG_LEVEL are passed to the instances.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { readable } from '../readable-log.js'

const here = dirname(fileURLToPath(import.meta.url))
const env = process.env
const redisBinary = env.REDIS_SERVER_BIN ?? 'redis-server'
const members = [{ id: 'a', port: env.PORT_A ?? '3001' }, { id: 'b', port: env.PORT_B ?? '3002' }]
const instances = new Map() // id -> child process, while it runs
let ownRedis = null // the redis-server started here, if any
let stopping = false

const running = (child) => child.exitCode === null && child.signalCode === null

// Children get their own process group (detached), so a Ctrl-C in the terminal reaches only
// this process, which stops the instances first (they leave the cluster through Redis) and Redis last.
function run (name, command, args, childEnv, { onLine = () => {}, quiet = false } = {}) {
  const child = spawn(command, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const prefix = `[${name}]`.padEnd(8)
  // A quiet child's output is kept, and shown only if it exits before it was asked to.
  const kept = []
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      const text = readable(line)
      if (quiet) kept.push(line)
      else if (text !== null) console.log(`${prefix} ${text}`)
      onLine(line)
    })
  }
  child.on('exit', (code, signal) => {
    if (quiet && !stopping) for (const line of kept) console.log(`${prefix} ${line}`)
    console.log(`${prefix} exited (${signal ?? `code ${code}`})`)
  })
  return child
}

// Should this process die of an error, its children must not outlive it.
process.on('exit', () => {
  for (const child of [...instances.values(), ownRedis]) if (child && running(child)) child.kill('SIGKILL')
})

/** A port that was free a moment ago (startRedis retries if someone takes it first). */
async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

/** The pid of the Redis answering on `port`, or null: tells our server apart from one that grabbed the port first. */
function redisPid (port) {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let reply = ''
    const done = (pid) => { socket.destroy(); resolve(pid) }
    socket.setTimeout(500, () => done(null))
    socket.on('connect', () => socket.write('INFO server\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.startsWith('-')) return done(null) // e.g. -LOADING
      const match = /\r\nprocess_id:(\d+)\r\n/.exec(reply)
      if (match) done(Number(match[1]))
    })
    socket.on('error', () => done(null))
  })
}

async function startRedis () {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort()
    const child = run('redis', redisBinary, [
      '--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'no', '--daemonize', 'no',
      // Throwaway: nothing saved, nothing written into the repository.
      '--save', '', '--appendonly', 'no', '--dir', tmpdir(), '--loglevel', 'warning', '--logfile', ''
    ], env, { quiet: true })
    ownRedis = child
    const deadline = Date.now() + 10_000
    while (running(child) && Date.now() < deadline) {
      if (await redisPid(port) === child.pid) return `redis://127.0.0.1:${port}`
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    // The bind failed (port taken meanwhile) or it never answered: try another port.
    if (running(child)) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  throw new Error(`${redisBinary} did not start (see its output above)`)
}

/** Starts one instance; resolves with its URL once it listens, rejects if it exits first. */
function startInstance ({ id, port }, redisUrl) {
  return new Promise((resolve, reject) => {
    if (stopping) return reject(new Error('stopping'))
    const banner = /cluster instance \S+: open (http:\/\/\S+?)\/? for the dashboard/
    let listening = false
    const child = run(id, process.execPath, [join(here, 'instance.js')], { ...env, REDIS_URL: redisUrl, INSTANCE_ID: id, PORT: port }, {
      onLine (line) {
        const match = banner.exec(line)
        if (!match || listening) return
        listening = true
        resolve({ id, pid: child.pid, url: match[1] })
      }
    })
    instances.set(id, child)
    child.on('exit', (code, signal) => {
      instances.delete(id)
      if (!listening) return reject(new Error(`instance ${id} exited (${signal ?? `code ${code}`}) before it listened`))
      if (stopping) return
      // Killed on purpose, say to watch a failover: the others keep serving.
      if (instances.size === 0) return stop(code === 0 ? 0 : 1)
      // A new process gets a new instance id (instance.js picks one): never the id of one that may have crashed.
      const url = env.REDIS_URL ? '"$REDIS_URL"' : redisUrl
      console.log(`Instance ${id} is gone, ${[...instances.keys()].join(', ')} still serving. Start another with: REDIS_URL=${url} PORT=${port} node examples/cluster/instance.js`)
    })
  })
}

async function stop (exitCode = 0, signal = 'SIGTERM') {
  if (stopping) return
  stopping = true
  const children = [...instances.values()]
  for (const child of children) child.kill(signal)
  const killLater = setTimeout(() => { for (const child of children) if (running(child)) child.kill('SIGKILL') }, 15_000)
  await Promise.all(children.map((child) => running(child) ? once(child, 'exit') : null))
  clearTimeout(killLater)
  // Redis last: the instances release their leases through it as they close.
  if (ownRedis && running(ownRedis)) {
    const redis = ownRedis
    redis.kill('SIGTERM')
    const killRedis = setTimeout(() => redis.kill('SIGKILL'), 5000)
    await once(redis, 'exit')
    clearTimeout(killRedis)
  }
  process.exit(exitCode)
}

// Forwarded to the instances (a closed terminal's SIGHUP as SIGTERM), which close gracefully.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => stop(0, signal === 'SIGHUP' ? 'SIGTERM' : signal))

let redisUrl = env.REDIS_URL
if (!redisUrl) {
  if (spawnSync(redisBinary, ['--version'], { stdio: 'ignore' }).status !== 0) {
    console.error(`The cluster example needs Redis: install ${redisBinary} (it is then started for you, e.g. apt-get install redis-server), or set REDIS_URL=redis://host:port.`)
    process.exit(1)
  }
  try {
    redisUrl = await startRedis()
  } catch (err) {
    console.error(err.message)
    await stop(1)
  }
}

let started
try {
  started = await Promise.all(members.map((member) => startInstance(member, redisUrl)))
} catch (err) {
  console.error(err.message)
  await stop(1)
}
if (!stopping) {
  const leaseMs = Number(env.LEASE_MS ?? 3000)
  console.log(`
fastify-agent-sse cluster example: ${started.length} instances share their agent streams through Redis at ${redacted(redisUrl)}${ownRedis ? ` (redis-server pid ${ownRedis.pid}, stopped on exit)` : ''}
${started.map(({ id, pid, url }) => `  instance ${id} (pid ${pid}): ${url}/`).join('\n')}
Open both URLs on the same agent: each shows 2 SSE clients on one task, and "collected_by" in the samples names the instance that runs it.
Stop that instance (kill -TERM <pid>): the other takes over within ${seconds(leaseMs / 3)} s (one renewal). Kill it (kill -KILL <pid>): within ${seconds(leaseMs + leaseMs / 3)} s (the lease plus one renewal).
Ctrl-C stops everything.
`)
}

function seconds (ms) {
  return Math.round(ms / 100) / 10
}

/** The URL without credentials, for printing. */
function redacted (url) {
  try {
    const { protocol, host } = new URL(url)
    return `${protocol}//${host}`
  } catch {
    return 'REDIS_URL'
  }
}
