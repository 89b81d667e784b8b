import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

// The README's usage snippet is what users copy: it must compile against the package's built types
// (`npm test` builds before it runs the tests),
// with only the transport it talks to declared (its shape is what the snippet assumes of it).

const run = promisify(execFile)
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')

const transport = `declare const myTransport: {
  send (agentId: string, message: object, options?: { signal?: AbortSignal }): Promise<string>
  onSample (taskId: string, listener: (sample: Record<string, unknown>) => void): () => void
  onOffline (agentId: string, listener: () => void): () => void
  request (agentId: string, message: object): Promise<object>
  isConnected (agentId: string): boolean
}
`

t.test('the README\'s usage snippet compiles against the package\'s built types (strict)', async (t) => {
  const readme = await readFile('README.md', 'utf8')
  const usage = readme.slice(readme.indexOf('## Usage'))
  const snippet = /```ts\n([\s\S]*?)```/.exec(usage)?.[1]
  t.ok(snippet?.includes('signal.addEventListener'), 'the snippet that shows the adapter')
  const dir = await mkdtemp(join(process.cwd(), '.readme-snippet-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'usage.mts'), transport + snippet)
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noEmit: true,
      // The package's own .d.ts under skipLibCheck false, for every resolver, is test/package-types.test.ts's job.
      skipLibCheck: true,
      types: ['node'],
      paths: { 'fastify-agent-sse': ['../dist/esm/index.d.ts'] }
    },
    files: ['usage.mts']
  }))
  // Without tap's loader options: tsc is a plain child process, not a test.
  const env = { ...process.env, NODE_OPTIONS: '' }
  const result = await run(process.execPath, [tsc, '-p', dir], { timeout: 120_000, env }).then(() => ({ code: 0, output: '' }), (err: { code: number, stdout: string }) => ({ code: err.code, output: err.stdout }))
  t.same(result, { code: 0, output: '' }, 'tsc reports nothing')
})
