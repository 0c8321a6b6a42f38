// Writes test/harness/durations.json (seconds per test file, hooks included: the sequencer's order) from the
// output of vitest's default reporter, e.g. `npm test 2>&1 | tee .tmp/test.log`, then
// `node scripts/test-durations.mjs .tmp/test.log`. (The JSON report's per-file times leave out the hooks,
// where the Docker suites spend most of theirs.)
import { readFileSync, writeFileSync } from 'node:fs';

const text = readFileSync(process.argv[2] ?? '.tmp/test.log', 'utf8').replace(
  new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'),
  '',
); // colours off
const out = {};
for (const m of text.matchAll(/^ [✓❯×] (test\/\S+\.test\.ts) \(.*\) (\d+)ms$/gm)) {
  out[m[1]] = Math.max(out[m[1]] ?? 0, Math.round(Number(m[2]) / 100) / 10);
}
const sorted = Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
writeFileSync('test/harness/durations.json', `${JSON.stringify(sorted, null, 2)}\n`);
console.log(`test/harness/durations.json: ${Object.keys(sorted).length} files`);
