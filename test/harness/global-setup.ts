import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { resetFigures, summariseFigures } from '../faults/figures.js';
import { sweepLeftovers } from './docker.js';
import { startS3Server } from './s3-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: { endpoint: string; accessKeyId: string; secretAccessKey: string };
    runId: string;
  }
}

/**
 * One S3 protocol server for the whole run, on 127.0.0.1; each test file makes its own bucket.
 * Every Docker resource a test makes is labelled with this run's id, so teardown removes exactly those,
 * even when tests failed. In CI (alone on the machine) leftovers of any earlier run are swept first.
 */
export default async function setup(project: TestProject) {
  const runId = `run-${Date.now().toString(36)}-${process.pid}`;
  // CLI tests run the built entry point (dist/cli/main.js): build it from the current sources.
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    stdio: 'inherit',
  });
  if (process.env.CI) await sweepLeftovers();
  resetFigures();
  const server = await startS3Server();
  project.provide('s3', {
    endpoint: server.endpoint,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
  });
  project.provide('runId', runId);
  return async () => {
    // The fault suites' figures, one line (docs: README "Tests").
    const figures = summariseFigures();
    if (figures) console.log(`\nfault suites: ${figures}\n`);
    await server.stop();
    await sweepLeftovers({ runId });
  };
}
