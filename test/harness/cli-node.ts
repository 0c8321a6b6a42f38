import { readFileSync } from 'node:fs';

/**
 * The node the tests run the CLI with: the product's runtime, as the image has it (zstd in zlib, so packs are
 * written as frames), recorded by scripts/provision.sh in .tmp/cli-node. The node running the tests when there
 * is no record (a checkout provisioned before it existed).
 */
function recorded(): string | undefined {
  try {
    return readFileSync(new URL('../../.tmp/cli-node', import.meta.url), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export const CLI_NODE = process.env.MBS_TEST_CLI_NODE ?? recorded() ?? process.execPath;

/** The image's node flags (Dockerfile's command wrappers, as the bench runs them): the CLI runs as it ships. */
export const CLI_NODE_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=512', '--expose-gc'];

/** The image's environment that bears on memory (Dockerfile `ENV`); the test's own value wins. */
export function imageEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '32768', ...env };
}
