import { readFileSync } from 'node:fs'

/** The package's version, from the package.json above this file (sources and dist alike). */
export function packageVersion(): string {
  for (let url = new URL('.', import.meta.url); ; url = new URL('..', url)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'conveyor') return pkg.version ?? 'unknown'
    } catch {
      // Not here: one level up.
    }
    if (url.pathname === '/') return 'unknown'
  }
}
