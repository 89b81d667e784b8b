import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis, type ClusterOptions } from 'ioredis'
import type { Test } from 'tap'
import { freePort, redisSkip } from './redis-server.js'

// A real three-master Redis Cluster for the tests: three redis-server processes with
// --cluster-enabled yes, joined by `redis-cli --cluster create`, each in a temp dir of its own.

const serverBinary = process.env.REDIS_SERVER_BIN ?? 'redis-server'
/** The redis-cli binary; REDIS_CLI_BIN overrides it, like REDIS_SERVER_BIN for the server. */
const cliBinary = process.env.REDIS_CLI_BIN ?? 'redis-cli'
const MASTERS = 3
const SLOTS = 16384

let cliAvailable: boolean | undefined

/**
 * For `t.test(name, { skip: redisClusterSkip() }, ...)`: false when redis-server and redis-cli are
 * present, else the skip reason. On CI a missing binary throws, as `redisSkip()` does.
 */
export function redisClusterSkip (): string | false {
  const server = redisSkip()
  if (server !== false) return server
  cliAvailable ??= spawnSync(cliBinary, ['--version'], { stdio: 'ignore' }).status === 0
  if (cliAvailable) return false
  const ci = process.env.CI
  if (ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0') {
    throw new Error(`${cliBinary} is required on CI (CI=${ci}) but is not installed; the Redis Cluster tests must not be skipped there`)
  }
  return `${cliBinary} is not installed (it comes with redis-server's package, e.g. apt-get install redis-tools; or set REDIS_CLI_BIN): skipping the Redis Cluster tests`
}

/**
 * What the tests' cluster clients use (as the instances do with a standalone Redis): commands fail
 * fast while the cluster is down, and the client tries to reconnect every 50 ms.
 */
export const CLUSTER_CLIENT_OPTIONS: ClusterOptions = {
  lazyConnect: true,
  redisOptions: { maxRetriesPerRequest: 1 },
  clusterRetryStrategy: () => 50
}

export interface ClusterNode {
  host: string
  port: number
}

export interface RedisCluster {
  /** The three masters, in the order of their slot ranges (the first owns slot 0). */
  nodes: ClusterNode[]
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: the startup nodes, as the instance fixture takes them. */
  seeds: string
  /** A new ioredis Cluster client (CLUSTER_CLIENT_OPTIONS plus `options`) with an 'error' listener; the caller disconnects it. */
  client (options?: ClusterOptions): Cluster
  /** A plain client of one node (no redirections), one per node, disconnected in the teardown of the cluster's test. */
  node (node: ClusterNode): Redis
  /** The master that owns the key's slot (hash tags count: `p{agent}:s` is agent's), as of the last moveSlot. */
  nodeOf (key: string): ClusterNode
  /**
   * Moves one slot with its keys to another master while clients use it, as a resharding does: SETSLOT
   * IMPORTING and MIGRATING, MIGRATE of its keys, then SETSLOT NODE on every master.
   */
  moveSlot (slot: number, to: ClusterNode): Promise<void>
  /** FLUSHALL on every master. */
  flushAll (): Promise<void>
  /** Everything the nodes and redis-cli printed (warnings and errors only). */
  output (): string
  /** SIGKILL of every node, like a crash of the whole cluster: no data is kept. Resolves once all exited. */
  stop (): Promise<void>
  /** Starts every node again on its ports with its cluster config (same ids, same slots, no data); resolves once the cluster is ok. */
  start (): Promise<void>
  restart (): Promise<void>
}

/**
 * One command on a raw socket (no client library: no reconnect noise, no cluster redirection),
 * for the replies the helper needs: a simple or bulk string. Null if the node does not answer
 * (yet), or answers with an error (e.g. -LOADING).
 */
function command (port: number, args: string[], timeoutMs = 1000): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let reply = Buffer.alloc(0)
    const done = (value: string | null) => { socket.destroy(); resolve(value) }
    socket.setTimeout(timeoutMs, () => done(null))
    socket.on('connect', () => socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`))
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk])
      const lineEnd = reply.indexOf('\r\n')
      if (lineEnd === -1) return
      const head = reply.subarray(0, lineEnd).toString('latin1')
      if (head.startsWith('+')) return done(head.slice(1))
      if (!head.startsWith('$')) return done(null)
      const length = Number(head.slice(1))
      if (length < 0) return done(null)
      if (reply.length >= lineEnd + 2 + length) done(reply.subarray(lineEnd + 2, lineEnd + 2 + length).toString('utf8'))
    })
    socket.on('error', () => done(null))
  })
}

async function serverPid (port: number): Promise<number | null> {
  const match = /\r\nprocess_id:(\d+)\r\n/.exec((await command(port, ['INFO', 'server'], 500)) ?? '')
  return match ? Number(match[1]) : null
}

/** `field:value` lines (INFO, CLUSTER INFO) as a record. */
function fields (text: string | null): Record<string, string> {
  const record: Record<string, string> = {}
  for (const line of (text ?? '').split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) record[line.slice(0, colon)] = line.slice(colon + 1)
  }
  return record
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface NodeProcess {
  port: number
  /** The cluster bus (--cluster-port), chosen free like the client port rather than port + 10000, which may be taken or past 65535. */
  busPort: number
  dir: string
  child: ChildProcess
  /** Set when the process exited or could not be spawned at all. */
  dead: boolean
  exited: Promise<void>
}

function spawnNode (port: number, busPort: number, dir: string, log: (text: string) => void): NodeProcess {
  const child = spawn(serverBinary, [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--cluster-enabled', 'yes',
    '--cluster-port', String(busPort),
    '--cluster-config-file', join(dir, `nodes-${port}.conf`),
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    '--loglevel', 'warning',
    '--logfile', '',
    '--dir', dir
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let exited = () => {}
  const node: NodeProcess = { port, busPort, dir, child, dead: false, exited: new Promise((resolve) => { exited = resolve }) }
  const end = () => { node.dead = true; exited() }
  child.once('exit', end)
  // A spawn failure (binary missing) emits 'error' and never 'exit'.
  child.once('error', (err) => { log(`[${port}] ${String(err)}\n`); end() })
  child.stdout!.on('data', (chunk: Buffer) => log(`[${port}] ${chunk.toString()}`))
  child.stderr!.on('data', (chunk: Buffer) => log(`[${port}] ${chunk.toString()}`))
  return node
}

/** True once this process answers on its port; false if it exited first (a port taken by someone else). */
async function answers (node: NodeProcess, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (node.dead) return false
    if (await serverPid(node.port) === node.child.pid) return true
    if (Date.now() > deadline) return false
    await sleep(20)
  }
}

async function kill (node: NodeProcess): Promise<void> {
  if (!node.dead) node.child.kill('SIGKILL')
  await node.exited
}

/** Runs redis-cli; resolves with its exit code and output. */
function cli (args: string[]): Promise<{ code: number | null, output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cliBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.once('error', (err) => resolve({ code: null, output: output + String(err) }))
    child.once('exit', (code) => resolve({ code, output }))
  })
}

/**
 * Every node says cluster_state:ok with all 16384 slots assigned and ok, and knows the other two.
 * A restarted master waits about 2 s (its rejoin delay) before it says ok.
 */
async function clusterOk (nodes: NodeProcess[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (nodes.some((node) => node.dead)) return false
    const infos = await Promise.all(nodes.map(async (node) => fields(await command(node.port, ['CLUSTER', 'INFO']))))
    if (infos.every((info) => info.cluster_state === 'ok' && info.cluster_slots_assigned === String(SLOTS) &&
      info.cluster_slots_ok === String(SLOTS) && info.cluster_known_nodes === String(nodes.length))) return true
    if (Date.now() > deadline) return false
    await sleep(50)
  }
}

/** Slot ranges per master port, from CLUSTER NODES (`<id> <ip:port@bus> <flags> ... <from>-<to> ...`). */
async function slotRanges (port: number): Promise<Array<{ port: number, from: number, to: number }>> {
  const ranges: Array<{ port: number, from: number, to: number }> = []
  for (const line of ((await command(port, ['CLUSTER', 'NODES'])) ?? '').split('\n')) {
    const parts = line.trim().split(' ')
    if (parts.length < 9 || !parts[2]!.includes('master')) continue
    const nodePort = Number(/:(\d+)@/.exec(parts[1]!)?.[1])
    for (const range of parts.slice(8)) {
      const match = /^(\d+)(?:-(\d+))?$/.exec(range)
      if (match) ranges.push({ port: nodePort, from: Number(match[1]), to: Number(match[2] ?? match[1]) })
    }
  }
  return ranges.sort((x, y) => x.from - y.from)
}

/** Three nodes up, each its own process on its own free ports and temp dir; retried on a port race. */
async function spawnNodes (log: (text: string) => void, made: NodeProcess[]): Promise<NodeProcess[]> {
  const nodes: NodeProcess[] = []
  const used = new Set<number>()
  for (let attempt = 1; nodes.length < MASTERS; attempt++) {
    if (attempt > MASTERS + 5) throw new Error(`${MASTERS} cluster nodes did not start in ${attempt - 1} attempts`)
    const [port, busPort] = [await freePort(), await freePort()]
    if (used.has(port) || used.has(busPort) || port === busPort) continue
    const dir = await mkdtemp(join(tmpdir(), 'agent-sse-cluster-'))
    const node = spawnNode(port, busPort, dir, log)
    made.push(node)
    if (await answers(node)) {
      nodes.push(node)
      used.add(port).add(busPort)
    } else {
      await kill(node)
    }
  }
  return nodes
}

/**
 * A real 3-master Redis Cluster on free loopback ports: `redis-server --cluster-enabled yes` ×3,
 * joined by `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`; resolves once every
 * node says cluster_state:ok with all slots assigned. SIGKILLed and its temp dirs removed in teardown.
 */
export async function startRedisCluster (t: Test): Promise<RedisCluster> {
  let output = ''
  const log = (text: string) => { output += text }
  // Every process and dir ever made, for the teardown (a failed attempt's too).
  const made: NodeProcess[] = []
  const nodeClients = new Map<number, Redis>()
  t.teardown(async () => {
    for (const client of nodeClients.values()) client.disconnect()
    await Promise.all(made.map(kill))
    await Promise.all([...new Set(made.map((node) => node.dir))].map((dir) => rm(dir, { recursive: true, force: true })))
  })

  let nodes: NodeProcess[] = []
  for (let attempt = 1; ; attempt++) {
    nodes = await spawnNodes(log, made)
    const created = await cli(['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', '0', '--cluster-yes'])
    // A node can answer and then die on its bus port (taken meanwhile): then the cluster never gets ok.
    if (created.code === 0 && await clusterOk(nodes, 20_000)) break
    log(`redis-cli --cluster create (attempt ${attempt}) exited ${created.code}:\n${created.output}\n`)
    await Promise.all(nodes.map(kill))
    if (attempt === 3) throw new Error(`the Redis Cluster did not come up after ${attempt} attempts:\n${output}`)
  }

  const ranges = await slotRanges(nodes[0]!.port)
  const masters = [...new Set(ranges.map((range) => range.port))].map((port) => ({ host: '127.0.0.1', port }))
  if (masters.length !== MASTERS) throw new Error(`expected ${MASTERS} masters with slots, CLUSTER NODES shows ${JSON.stringify(ranges)}`)
  const slotPorts = new Int32Array(SLOTS)
  for (const range of ranges) slotPorts.fill(range.port, range.from, range.to + 1)
  let current = nodes

  const cluster: RedisCluster = {
    nodes: masters,
    seeds: masters.map((node) => `${node.host}:${node.port}`).join(','),
    client (options = {}) {
      const client = new Cluster(masters, { ...CLUSTER_CLIENT_OPTIONS, ...options })
      client.on('error', () => {})
      return client
    },
    node (node) {
      let client = nodeClients.get(node.port)
      if (client === undefined) {
        client = new Redis({ host: node.host, port: node.port, maxRetriesPerRequest: 1, retryStrategy: () => 50, lazyConnect: true })
        client.on('error', () => {})
        nodeClients.set(node.port, client)
      }
      return client
    },
    nodeOf (key) {
      const port = slotPorts[calculateSlot(key)]
      return masters.find((node) => node.port === port)!
    },
    async moveSlot (slot, to) {
      const from = masters.find((node) => node.port === slotPorts[slot])!
      if (from === to) return
      const id = async (node: ClusterNode) => String(await cluster.node(node).call('CLUSTER', 'MYID'))
      const [fromId, toId] = [await id(from), await id(to)]
      await cluster.node(to).call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId)
      await cluster.node(from).call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId)
      for (;;) {
        const keys = await cluster.node(from).call('CLUSTER', 'GETKEYSINSLOT', slot, 100) as string[]
        if (keys.length === 0) break
        await cluster.node(from).call('MIGRATE', to.host, to.port, '', 0, 5000, 'KEYS', ...keys)
      }
      // The new owner first, then the old one (which then redirects to it), then the rest.
      for (const node of [to, from, ...masters.filter((node) => node !== to && node !== from)]) {
        await cluster.node(node).call('CLUSTER', 'SETSLOT', slot, 'NODE', toId)
      }
      slotPorts[slot] = to.port
    },
    async flushAll () {
      for (const node of current) {
        if (await command(node.port, ['FLUSHALL']) !== 'OK') throw new Error(`FLUSHALL failed on ${node.port}`)
      }
    },
    output: () => output,
    stop: async () => { await Promise.all(current.map(kill)) },
    async start () {
      if (!current.some((node) => node.dead)) return
      // Same ports and config files, so the nodes find each other and their slots again; a few tries
      // ride out a slow release of the old sockets.
      for (let attempt = 1; ; attempt++) {
        current = current.map((node) => {
          if (!node.dead) return node
          const again = spawnNode(node.port, node.busPort, node.dir, log)
          made.push(again)
          return again
        })
        const up = await Promise.all(current.map((node) => answers(node)))
        if (up.every(Boolean) && await clusterOk(current, 20_000)) return
        await cluster.stop()
        if (attempt === 5) throw new Error(`the Redis Cluster could not start again:\n${output}`)
        await sleep(100 * attempt)
      }
    },
    async restart () {
      await cluster.stop()
      await cluster.start()
    }
  }
  return cluster
}
