// The dashboard as the example servers serve it: static files (the fleet page at /, one agent at
// /agent.html?agent=…), the package's browser client and uPlot, all as ES modules, plus the
// list of agents the pages show.
import { createReadStream } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

/**
 * `info` is what `GET /example/agents` answers (or a function returning it, for a server whose
 * agents come and go): `agents` (ids), optional `labels` (a word per agent id), `stop_delay_ms`,
 * and anything else the pages may show.
 */
export async function serveDashboard (app, info) {
  await app.register(fastifyStatic, { root: join(here, 'dashboard') })
  const modules = {
    '/client.js': fileURLToPath(import.meta.resolve('fastify-agent-sse/client')),
    '/vendor/uPlot.esm.js': require.resolve('uplot/dist/uPlot.esm.js'),
    '/vendor/uPlot.min.css': require.resolve('uplot/dist/uPlot.min.css')
  }
  for (const [path, file] of Object.entries(modules)) {
    app.get(path, (_request, reply) => reply.type(path.endsWith('.css') ? 'text/css' : 'text/javascript').send(createReadStream(file)))
  }
  app.get('/example/agents', async () => typeof info === 'function' ? info() : info)
}
