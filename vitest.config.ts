import { defineConfig } from 'vitest/config';
import LongestFirst from './test/harness/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    // Tests share one Docker engine on a 2-core machine: files run in parallel, with a bounded pool.
    maxWorkers: 3,
    // Longest files first (measured durations), so no long suite starts last: test/harness/sequencer.ts.
    sequence: { sequencer: LongestFirst },
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    env: {
      TESTCONTAINERS_RYUK_DISABLED: 'true',
      TESTCONTAINERS_HOST_OVERRIDE: 'localhost',
    },
  },
});
