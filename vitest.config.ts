import { defineConfig } from 'vitest/config';

// Integration and e2e tests start real servers and child processes; give them room, and keep files in
// separate worker processes so a SIGKILL test cannot disturb another file's state.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: true,
    maxWorkers: 2,
  },
});
