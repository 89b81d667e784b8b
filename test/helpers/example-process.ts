import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Test } from 'tap'
import { waitFor } from './server.js'

/**
 * Runs `examples/server.js` as a real process on an ephemeral port, killed in teardown.
 * `output()` is everything it printed so far; `origin` is the URL it listens on.
 */
export async function startExampleServer (t: Test, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['examples/server.js'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const banner = /open (http:\/\/\S+)\/ for the dashboard/
  await waitFor(() => banner.test(output), 'the example server to print its URL', 20_000)
  return { child, origin: banner.exec(output)![1]!, output: () => output }
}
