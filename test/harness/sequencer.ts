import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Longest files first, from measured durations (test/harness/durations.json), so a 3-worker pool does not
 * start a 5-minute suite last and wait for it alone. Vitest's own order needs its results cache, which a
 * clean CI clone lacks (it then orders by file size: a 300-line crash suite after a 750-line unit test).
 * A file not in the list (a new one) counts as UNKNOWN_S: early, since new files are mostly Docker suites.
 * Refresh the list from a run's output: `node scripts/test-durations.mjs .tmp/test.log` (see that script).
 */
const UNKNOWN_S = 120;
const durations = JSON.parse(readFileSync(new URL('./durations.json', import.meta.url), 'utf8')) as Record<
  string,
  number
>;

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const weight = (f: TestSpecification) => durations[relative(root, f.moduleId)] ?? UNKNOWN_S;
    return [...files].sort((a, b) => weight(b) - weight(a));
  }
}
