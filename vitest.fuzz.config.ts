import { defineConfig } from 'vitest/config'

/** The hostile-input fuzz run against a gateway process with auth on (`npm run test:fuzz`; `FUZZ_SEED`, `FUZZ_RUNS`). */
export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 1_800_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
})
