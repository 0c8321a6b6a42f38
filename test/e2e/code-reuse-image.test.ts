import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { createSidecarStack, type SidecarStack } from '../harness/sidecar.js';
import { buildSidecarImage } from '../harness/sidecar-image.js';

/**
 * As users run it: the image's `backup` in the sidecar container, the volumes at /backup/<name>. The code
 * volume is listed with the image's own find and sort, and its unchanged archive is linked on the target.
 */
describe('the image reuses an unchanged code volume', () => {
  let s: SidecarStack;

  beforeAll(async () => {
    const build = await buildSidecarImage();
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    s = await createSidecarStack({ seed: { files: 10, users: 50, logs: 100 } });
  }, 15 * 60_000);
  afterAll(async () => {
    await s?.remove();
  });

  const backup = async () => {
    const r = await s.exec(['backup', '--json']);
    expect(r.exitCode, r.stderr.slice(-2000)).toBe(0);
    return { m: JSON.parse(r.stdout) as Manifest, stderr: r.stderr };
  };
  const inode = async (m: Manifest) => {
    const file = m.volumes.find((v) => v.name === 'moodle_data')?.file;
    const r = await s.exec(['stat', '-c', '%i %h', `/archive/${m.id}/${file}`]);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout.trim();
  };

  it('links the second snapshot archive of moodle_data to the first one', async () => {
    await sleep(2_100); // a change under 2 s old is not vouched for
    const first = await backup();
    const second = await backup();
    expect(second.stderr).toContain(`moodle_data: unchanged since ${first.m.id}, archive reused (linked)`);
    expect(second.m.volumes.find((v) => v.name === 'moodle_data')?.reusedFrom).toBe(first.m.id);
    const [a, b] = [await inode(first.m), await inode(second.m)];
    expect(b).toBe(a);
    expect(b).toMatch(/ 2$/);
    const verify = await s.exec(['verify', second.m.id]);
    expect(verify.exitCode, verify.stderr.slice(-2000)).toBe(0);
  });
});
