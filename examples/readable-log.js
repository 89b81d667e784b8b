// The example servers log JSON (pino); the launchers show its level and message, and anything else as it is.
const levels = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }

// Fastify's two lines per request, at info. An error (a 5xx, a failed response) is another line and still shows.
const requestLines = new Set(['incoming request', 'request completed'])

function parse (line) {
  if (!line.startsWith('{')) return null
  try {
    return JSON.parse(line)
  } catch {
    return null
  }
}

function show (line, record) {
  return record?.msg === undefined ? line : `${levels[record.level] ?? record.level} ${record.msg}`
}

/** The line as a person reads it, or null for one of Fastify's lines per request (the launchers skip those). */
export function readable (line) {
  const record = parse(line)
  return isRequestLine(record) ? null : show(line, record)
}

function isRequestLine (record) {
  return record?.level === 30 && requestLines.has(record.msg)
}

/**
 * A pino destination for a server run in a terminal: each line as `readable` shows it, without
 * Fastify's lines per request (the dashboard polls; they would drown the lifecycle's lines).
 * `Fastify({ logger: { stream: readableLogStream() } })`.
 */
export function readableLogStream (output = process.stdout) {
  return {
    write (chunk) {
      const line = chunk.trimEnd()
      const text = readable(line)
      if (text !== null) output.write(`${text}\n`)
    }
  }
}
