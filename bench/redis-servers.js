// The Redis that bench/cluster.js runs on: one redis-server, or a real 3-master Redis Cluster
// (3 × `redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`), on free loopback
// ports, in a temp dir, SIGKILLed by stop(). Either way the caller gets the same shape:
//   { kind, seeds, client(), probes, stop() }
// where client() makes the connection an instance uses (a Redis or a Cluster), `seeds` is what a child
// process needs to make one (`host:port,…`), and `probes` are plain clients of every node (one for a
// single Redis), marked `benchProbe` so that the bench does not count their commands as the instances'.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Cluster, Redis } from 'ioredis'

const serverBinary = process.env.REDIS_SERVER_BIN ?? 'redis-server'
const cliBinary = process.env.REDIS_CLI_BIN ?? 'redis-cli'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

// Whatever happens to the bench (an error, Ctrl-C), no redis-server outlives it.
const running = new Set()
process.on('exit', () => { for (const child of running) child.kill('SIGKILL') })
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130))

function spawnServer (port, dir, extra = []) {
  const child = spawn(serverBinary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning', '--dir', dir, ...extra], { stdio: 'ignore' })
  running.add(child)
  child.once('exit', () => running.delete(child))
  return child
}

/** A plain client of one node, ready; its commands are not counted as the instances'. */
async function probe (port) {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => 50 })
  client.benchProbe = true
  client.on('error', () => {})
  await client.connect().catch(() => {})
  while (client.status !== 'ready') await sleep(20)
  return client
}

export async function startRedis () {
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-redis-'))
  const child = spawnServer(port, dir)
  const probes = [await probe(port)]
  return {
    kind: 'one redis-server',
    seeds: `127.0.0.1:${port}`,
    client: () => new Redis(port, '127.0.0.1'),
    probes,
    stop () {
      for (const client of probes) client.disconnect()
      child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

function run (binary, args) {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => { output += chunk })
    child.stderr.on('data', (chunk) => { output += chunk })
    child.once('error', (err) => resolve({ code: null, output: output + String(err) }))
    child.once('exit', (code) => resolve({ code, output }))
  })
}

/** Every node says cluster_state:ok with the 16384 slots assigned and ok. */
async function clusterOk (probes, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const infos = await Promise.all(probes.map((client) => client.call('CLUSTER', 'INFO')))
    if (infos.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info))) return
    if (Date.now() > deadline) throw new Error(`the Redis Cluster is not ok:\n${infos.join('\n')}`)
    await sleep(50)
  }
}

export async function startRedisCluster (masters = 3) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-redis-cluster-'))
  const children = []
  const ports = []
  const busPorts = []
  while (busPorts.length < masters) {
    // The cluster bus gets a free port of its own (--cluster-port) rather than port + 10000, which may be taken.
    const [port, busPort] = [await freePort(), await freePort()]
    if (new Set([port, busPort, ...ports, ...busPorts]).size !== ports.length + busPorts.length + 2) continue
    ports.push(port)
    busPorts.push(busPort)
  }
  ports.forEach((port, index) => {
    children.push(spawnServer(port, dir, ['--cluster-enabled', 'yes', '--cluster-port', String(busPorts[index]), '--cluster-config-file', path.join(dir, `nodes-${port}.conf`)]))
  })
  const probes = await Promise.all(ports.map(probe))
  const created = await run(cliBinary, ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
  if (created.code !== 0) throw new Error(`redis-cli --cluster create exited ${created.code}:\n${created.output}`)
  await clusterOk(probes)
  const nodes = ports.map((port) => ({ host: '127.0.0.1', port }))
  return {
    kind: `Redis Cluster of ${masters} masters`,
    seeds: nodes.map(({ host, port }) => `${host}:${port}`).join(','),
    client: () => new Cluster(nodes),
    probes,
    stop () {
      for (const client of probes) client.disconnect()
      for (const child of children) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
