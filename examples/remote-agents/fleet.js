// Starts the remote-agents server and three agent processes (edge-1..3), and forwards their
// output with a prefix per process. Ctrl-C stops them all.
//
//   node examples/remote-agents/fleet.js        (PORT, HOST, STOP_DELAY_MS are passed to the server)
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { readable } from '../readable-log.js'

const here = dirname(fileURLToPath(import.meta.url))
const agentIds = ['edge-1', 'edge-2', 'edge-3']
const children = new Set()
let stopping = false

function run (name, args, onLine = () => {}) {
  const child = spawn(process.execPath, args, { env: { ...process.env, EXPECTED_AGENTS: agentIds.join(',') }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const prefix = `[${name}]`.padEnd(9)
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      const text = readable(line)
      if (text !== null) console.log(`${prefix} ${text}`)
      onLine(line)
    })
  }
  child.on('exit', (code, signal) => {
    children.delete(child)
    console.log(`${prefix} exited (${signal ?? `code ${code}`})`)
    if (name === 'server' && !stopping) stop(1)
  })
  return child
}

function stop (exitCode = 0) {
  if (stopping) return
  stopping = true
  // Agents first, so the server sees them leave; then the server.
  for (const child of children) child.kill('SIGTERM')
  const check = setInterval(() => {
    if (children.size === 0) {
      clearInterval(check)
      process.exit(exitCode)
    }
  }, 50)
  setTimeout(() => {
    for (const child of children) child.kill('SIGKILL')
  }, 5000).unref()
}

for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => stop(0))

// The agents start once the server has printed where they should connect.
let agentsStarted = false
run('server', [join(here, 'server.js')], (line) => {
  const match = /agents connect to (ws:\/\/\S+\/agents\/ws)/.exec(line)
  if (!match || agentsStarted) return
  agentsStarted = true
  for (const id of agentIds) run(id, [join(here, 'agent.js'), '--id', id, '--server', match[1]])
})
