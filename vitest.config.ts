import { defineConfig } from 'vitest/config';

// Integration and e2e tests start real servers and child processes; give them room, and keep files in
// separate worker processes so a SIGKILL test cannot disturb another file's state. Under CI a JSON
// report is written too, which .ci/run turns into its "N passed, N failed" line.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: true,
    maxWorkers: 2,
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: process.env.CI ? { json: 'test-results.json' } : undefined,
  },
});
