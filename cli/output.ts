import { styleText } from 'node:util'
import YAML from 'yaml'

/** Output formats of `get`: a table (`wide` with more columns), JSON, YAML, or `TYPE/NAME` lines. */
export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml' | 'name'
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'wide', 'json', 'yaml', 'name']

export const out = (line = ''): boolean => process.stdout.write(line + '\n')
export const note = (line: string): boolean => process.stderr.write(line + '\n')

/** Colour only on a terminal, and never with `NO_COLOR` or `--no-color`. */
let colour = process.stdout.isTTY === true && !process.env.NO_COLOR
export function setColour(enabled: boolean): void {
  colour = enabled && process.stdout.isTTY === true
}
export const isTerminal = (): boolean => process.stdout.isTTY === true

type Style = Parameters<typeof styleText>[0]
export const paint = (style: Style, text: string): string => (colour ? styleText(style, text) : text)

/** The colour of a status word: green for success, red for failure, yellow for what is under way. */
export function statusColour(status: string | undefined): Style {
  if (status === undefined) return 'dim'
  if (/^(succeeded|done|ok|ready|active)$/.test(status)) return 'green'
  if (/^(failed|error|stuck|expired)$/.test(status)) return 'red'
  if (/^(cancelled|skipped)$/.test(status)) return 'gray'
  return 'yellow'
}

/** Columns padded to their widest cell, kubectl style (two spaces apart, upper-case headers). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => visible(row[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + ' '.repeat(widths[i]! - visible(cell).length)))
      .join('   ')
      .trimEnd()
  return [line(headers), ...rows.map(line)]
}

// eslint-disable-next-line no-control-regex -- strips the colour codes paint() adds, to measure what shows
const visible = (text: string): string => text.replace(/\u001b\[[0-9;]*m/g, '')

/** `5s`, `3m`, `2h`, `4d` since an ISO time. */
export function age(since: string | undefined, now = Date.now()): string {
  if (!since) return '<unknown>'
  const seconds = Math.max(0, Math.round((now - Date.parse(since)) / 1000))
  if (seconds < 120) return `${seconds}s`
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`
  return `${Math.round(seconds / 86_400)}d`
}

/** Milliseconds as `850ms`, `12s`, `3m4s`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  const seconds = Math.round(ms / 1000)
  if (seconds < 60) return `${seconds}s`
  return `${Math.floor(seconds / 60)}m${seconds % 60 ? `${seconds % 60}s` : ''}`
}

export function printStructured(value: unknown, format: 'json' | 'yaml'): void {
  if (format === 'json') out(JSON.stringify(value, null, 2))
  else process.stdout.write(YAML.stringify(value))
}
