import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The fault suites (outages, a cluster losing nodes) run on their own: npm run test:faults; the fuzz run too: npm run test:fuzz.
    exclude: ['test/faults/**', 'test/fuzz/**', '**/node_modules/**'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 20_000,
  },
})
