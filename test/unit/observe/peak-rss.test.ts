import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The built module (dist/, built by the global setup), run in a fresh process.
const module = fileURLToPath(new URL('../../../dist/observe/peak-rss.js', import.meta.url));

describe('peakRssMb', () => {
  it("is the process's own peak, not the one it inherits from a large parent it was forked from", () => {
    // This test's process holds ~300 MB more than the child will; ru_maxrss would report at least that.
    const ballast = Array.from({ length: 30 }, () => Buffer.alloc(10 << 20, 1));
    const parentMb = process.memoryUsage().rss / 1048576;
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `import(${JSON.stringify(module)}).then((m) => console.log(m.peakRssMb(), Math.round(process.resourceUsage().maxRSS / 1024)))`,
      ],
      { encoding: 'utf8' },
    );
    expect(ballast.length).toBe(30);
    const [own, inherited] = r.stdout.trim().split(' ').map(Number);
    expect(parentMb).toBeGreaterThan(300);
    expect(inherited).toBeGreaterThan(300); // what getrusage says: the parent's mark
    expect(own).toBeGreaterThan(10);
    expect(own).toBeLessThan(150);
  });
});
