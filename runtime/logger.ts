import { logLevelFromEnv } from './config.ts'

/** A minimal leveled logger writing one line per record to stderr. No secrets are ever passed to it. */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}

const LEVELS = { silent: 0, error: 1, warn: 2, info: 3 } as const
type Level = keyof typeof LEVELS

export function createLogger(
  component: string,
  level: Level = (logLevelFromEnv() as Level | undefined) ?? 'info',
): Logger {
  const threshold = LEVELS[level] ?? LEVELS.info
  const write = (at: Exclude<Level, 'silent'>, message: string, fields?: Record<string, unknown>): void => {
    if (LEVELS[at] > threshold) return
    const extra = fields ? ' ' + JSON.stringify(fields) : ''
    process.stderr.write(`${new Date().toISOString()} ${at.padEnd(5)} [${component}] ${message}${extra}\n`)
  }
  return {
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
  }
}
