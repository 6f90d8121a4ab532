import { defineConfig } from 'vitest/config'

/** The fault suites: real outages under load, one file at a time (`npm run test:faults`; `FAULTS_SHORT=1` for CI). */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 1_800_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
})
