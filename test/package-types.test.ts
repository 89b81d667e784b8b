import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import ts from 'typescript'

// The package as users install it (npm pack, then unpacked into node_modules), compiled from small
// consumer projects under every module resolution we support, with skipLibCheck off so that our own
// .d.ts files are checked too. skipLibCheck on would hide exactly the bugs this looks for: an
// unresolvable type in a .d.ts silently becomes `any` (issue 16: every FST_ERR_* under `bundler`).

const execFileAsync = promisify(execFile)
// npm and tar run without tap's loader and coverage (NODE_OPTIONS, NODE_V8_COVERAGE): a child with them writes
// process records into .tap/, which another tap run may have just removed.
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) =>
  name !== 'NODE_OPTIONS' && name !== 'NODE_V8_COVERAGE' && !name.startsWith('TAP') && !name.startsWith('_TAPJS')))
const run = (file: string, args: string[], cwd: string) => execFileAsync(file, args, { cwd, env, maxBuffer: 16 * 1024 * 1024 })
const root = join(dirname(fileURLToPath(import.meta.url)), '..')

// Five programs of ~500 files each (Node's, Fastify's, TypeBox's, ioredis' types): ~25 s on a busy 2-core machine.
t.setTimeout(180_000)

/** Uses every entry point and proves the error classes are typed (an `any` would make each @ts-expect-error unused). */
const esmConsumer = `
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import agentSse, {
  agentSse as namedAgentSse,
  StreamLifecycle,
  FST_ERR_AGENT_SSE_UNKNOWN_AGENT,
  FST_ERR_AGENT_SSE_INVALID_OPTION,
  FST_ERR_AGENT_SSE_CLOSED,
  type AgentAdapter,
  type StreamStatus
} from 'fastify-agent-sse'
import { AgentStreamClient, AgentStreamClientError, type StreamStatus as ClientStreamStatus } from 'fastify-agent-sse/client'
import { redisCoordinator, type RedisCoordinatorOptions } from 'fastify-agent-sse/redis'

const adapter: AgentAdapter = {
  async startMetricsStreaming (_agentId, { intervalSeconds }, sink) {
    sink.push({ cpu_percent: intervalSeconds })
    return { taskId: 't1' }
  },
  async stopMetricsStreaming () {},
  async getCurrentMetrics (agentId) { return { agentId } }
}

const options: RedisCoordinatorOptions = { redis: new Redis({ lazyConnect: true }), leaseMs: 10000 }
const app = Fastify()
app.register(agentSse, { adapter, coordinator: redisCoordinator(options) })
app.register(namedAgentSse, { adapter, stopDelayMs: 2000 })
const lifecycle: StreamLifecycle = app.streamLifecycle
const status: StreamStatus = lifecycle.status('a')
const active: boolean = status.streamingActive
// @ts-expect-error options are typed
app.register(agentSse, { adapter, stopDelayMs: '2000' })

const client = new AgentStreamClient({ baseUrl: 'http://127.0.0.1:3000/api' })
const pending: Promise<ClientStreamStatus> = client.getStatus('a')
const clientError: AgentStreamClientError | undefined = undefined

const unknownAgent = new FST_ERR_AGENT_SSE_UNKNOWN_AGENT('a')
const code: 'FST_ERR_AGENT_SSE_UNKNOWN_AGENT' = unknownAgent.code
const statusCode: 404 = unknownAgent.statusCode
const message: string = unknownAgent.message
const invalid: TypeError | Error = FST_ERR_AGENT_SSE_INVALID_OPTION('stopDelayMs', 'must be a number')
// @ts-expect-error the agent id is a string
void new FST_ERR_AGENT_SSE_UNKNOWN_AGENT(42)
// @ts-expect-error the code is its own literal
const wrongCode: 'FST_ERR_AGENT_SSE_UNKNOWN_TASK' = unknownAgent.code
// @ts-expect-error the status code is its own literal
const wrongStatus: 500 = new FST_ERR_AGENT_SSE_CLOSED().statusCode

export { active, pending, clientError, code, statusCode, message, invalid, wrongCode, wrongStatus }
`

/** The same from a CommonJS file (the package's `require` condition and its dist/cjs types). */
const cjsConsumer = `
import Fastify = require('fastify')
import sse = require('fastify-agent-sse')
import clientEntry = require('fastify-agent-sse/client')
import redisEntry = require('fastify-agent-sse/redis')
import ioredis = require('ioredis')

const adapter: sse.AgentAdapter = {
  async startMetricsStreaming () { return { taskId: 't1' } },
  async stopMetricsStreaming () {},
  async getCurrentMetrics (agentId) { return { agentId } }
}
const app = Fastify.fastify()
app.register(sse.default, { adapter })
app.register(sse.agentSse, { adapter, coordinator: redisEntry.redisCoordinator({ redis: new ioredis.Redis() }) })
const lifecycle: sse.StreamLifecycle = app.streamLifecycle
const client = new clientEntry.AgentStreamClient({ baseUrl: 'http://127.0.0.1:3000/api' })

const unknownAgent = new sse.FST_ERR_AGENT_SSE_UNKNOWN_AGENT('a')
const code: 'FST_ERR_AGENT_SSE_UNKNOWN_AGENT' = unknownAgent.code
// @ts-expect-error the agent id is a string
void new sse.FST_ERR_AGENT_SSE_UNKNOWN_AGENT(42)
// @ts-expect-error the code is its own literal
const wrongCode: 'FST_ERR_AGENT_SSE_UNKNOWN_TASK' = unknownAgent.code

export { lifecycle, client, code, wrongCode }
`

interface Consumer { module: string, moduleResolution: string, files: string[], build: 'esm' | 'cjs', extra?: Record<string, unknown> }

// One program per consumer: a program holding both the ESM and the CommonJS types of a dual package
// sees two StreamLifecycle classes and two `declare module 'fastify'` augmentations (the dual-package
// hazard, real at run time too), so the CommonJS file gets its own project.
const consumers: Record<string, Consumer> = {
  node16: { module: 'node16', moduleResolution: 'node16', files: ['consumer.ts'], build: 'esm' },
  'node16 (CommonJS file)': { module: 'node16', moduleResolution: 'node16', files: ['consumer.cts'], build: 'cjs' },
  nodenext: { module: 'nodenext', moduleResolution: 'nodenext', files: ['consumer.ts'], build: 'esm' },
  bundler: { module: 'esnext', moduleResolution: 'bundler', files: ['consumer.ts'], build: 'esm' },
  // node10 ignores `exports`: the subpaths resolve through `typesVersions`. esModuleInterop because
  // Fastify's own types need it there (pino's default import of thread-stream: TS1259 without it).
  node10: { module: 'commonjs', moduleResolution: 'node10', files: ['consumer-node10.ts'], build: 'cjs', extra: { esModuleInterop: true } }
}

const tsconfigName = (consumer: string): string => `tsconfig.${consumer.replace(/\W+/g, '-')}.json`

/** A project dir outside the repo (so lint and tap never see it) whose node_modules looks like an install. */
async function installPackedPackage (): Promise<string> {
  if (!existsSync(join(root, 'dist', 'esm', 'index.d.ts')) || !existsSync(join(root, 'dist', 'cjs', 'index.d.ts'))) {
    await run(process.execPath, [join(root, 'scripts', 'build.js')], root)
  }
  const dir = mkdtempSync(join(tmpdir(), 'agent-sse-types-'))
  // --ignore-scripts: `prepare` would rebuild (and first delete) dist/ under other test files using it.
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], root)
  const [{ filename }] = JSON.parse(stdout) as Array<{ filename: string }>
  const modules = join(dir, 'node_modules')
  const installed = join(modules, 'fastify-agent-sse')
  mkdirSync(installed, { recursive: true })
  await run('tar', ['-xzf', join(dir, filename), '-C', installed, '--strip-components=1'], dir)
  // The package's dependencies and the consumers' (fastify, ioredis, @types/node) as hoisted by npm.
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    if (entry.startsWith('.') || entry === 'fastify-agent-sse') continue
    symlinkSync(join(root, 'node_modules', entry), join(modules, entry))
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  writeFileSync(join(dir, 'consumer.ts'), esmConsumer)
  writeFileSync(join(dir, 'consumer.cts'), cjsConsumer)
  writeFileSync(join(dir, 'consumer-node10.ts'), cjsConsumer)
  for (const [name, { module, moduleResolution, files, extra }] of Object.entries(consumers)) {
    const compilerOptions = {
      module,
      moduleResolution,
      target: 'ES2022',
      lib: ['ES2023'],
      types: ['node'],
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      ...extra
    }
    writeFileSync(join(dir, tsconfigName(name)), JSON.stringify({ compilerOptions, files }, null, 2))
  }
  return dir
}

/**
 * What `tsc -p` would print about the consumer and the package's own files under one consumer's tsconfig,
 * compiled by the repo's TypeScript through its API rather than bin/tsc: tsc also checks every other
 * .d.ts in the program (Node's, Fastify's, TypeBox's: two thirds of its time, and not ours to fix), and one
 * process parses and binds those ~500 files once for all the configurations, sharing source files as tsserver
 * does. Five tsc runs took two minutes of a busy 2-core machine. Returns the printed diagnostics and the
 * package files the consumer's imports resolved to.
 */
function typeCheck (dir: string, consumer: string, sourceFiles: Map<string, ts.SourceFile | undefined>): { output: string, packageFiles: string[] } {
  const configErrors: ts.Diagnostic[] = []
  const config = ts.getParsedCommandLineOfConfigFile(join(dir, tsconfigName(consumer)), undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => { configErrors.push(diagnostic) }
  })
  const host = ts.createCompilerHost(config?.options ?? {})
  const readSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (fileName, languageVersionOrOptions, ...rest) => {
    // A file parses differently as ESM or CommonJS (impliedNodeFormat is in the options): that is in the key.
    const key = `${fileName} ${JSON.stringify(languageVersionOrOptions)}`
    if (!sourceFiles.has(key)) sourceFiles.set(key, readSourceFile(fileName, languageVersionOrOptions, ...rest))
    return sourceFiles.get(key)
  }
  const diagnostics = [...configErrors, ...(config?.errors ?? [])]
  const installed = join(dir, 'node_modules', 'fastify-agent-sse') + sep
  const packageFiles: string[] = []
  if (config !== undefined) {
    const program = ts.createProgram({ rootNames: config.fileNames, options: config.options, host })
    diagnostics.push(...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...program.getSyntacticDiagnostics())
    for (const file of program.getSourceFiles()) {
      const ours = file.fileName.startsWith(installed)
      if (ours) packageFiles.push(relative(installed, file.fileName))
      if (ours || !file.fileName.includes('/node_modules/')) diagnostics.push(...program.getSemanticDiagnostics(file))
    }
  }
  const output = ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (name) => name, getCurrentDirectory: () => dir, getNewLine: () => '\n' })
  return { output, packageFiles }
}

const dir = await installPackedPackage()
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('the packed package type-checks in consumers under every module resolution, with skipLibCheck off', async (t) => {
  const sourceFiles = new Map<string, ts.SourceFile | undefined>()
  for (const [consumer, { build }] of Object.entries(consumers)) {
    const { output, packageFiles } = typeCheck(dir, consumer, sourceFiles)
    t.equal(output, '', `no type error under ${consumer}`)
    t.ok(packageFiles.includes(join('dist', build, 'errors.d.ts')), `${consumer} reads the package's dist/${build} types`)
    t.same(packageFiles.filter((file) => !file.startsWith(join('dist', build) + sep)), [], `${consumer} reads no other build's types`)
  }
})

t.test('the package ships source and declaration maps with the sources they point to, and nothing else', async (t) => {
  const installed = join(dir, 'node_modules', 'fastify-agent-sse')
  const files = (readdirSync(installed, { recursive: true }) as string[]).filter((file) => statSync(join(installed, file)).isFile())
  t.same(files.filter((file) => !/^(dist\/(esm|cjs)\/|lib\/.*\.ts$)/.test(file)).sort(), ['LICENSE', 'README.md', 'package.json'])
  const outputs = files.filter((file) => /\.(js|d\.ts)$/.test(file))
  t.ok(outputs.length > 20, 'both builds are in the package')
  const unmapped: string[] = []
  for (const output of outputs) {
    if (!existsSync(join(installed, `${output}.map`))) {
      unmapped.push(`${output} has no map`)
      continue
    }
    const map = JSON.parse(readFileSync(join(installed, `${output}.map`), 'utf8')) as { sources: string[] }
    for (const source of map.sources) {
      if (!existsSync(join(installed, dirname(output), source))) unmapped.push(`${output}.map points to ${source}, not shipped`)
    }
  }
  t.same(unmapped, [], 'every .js and .d.ts has a map whose sources ship')
})
