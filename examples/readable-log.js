// The example servers log JSON (pino); the launchers show its level and message, and anything else as it is.
const levels = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }

export function readable (line) {
  if (!line.startsWith('{')) return line
  try {
    const { level, msg } = JSON.parse(line)
    return msg === undefined ? line : `${levels[level] ?? level} ${msg}`
  } catch {
    return line
  }
}
