import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HELPER_LABEL } from '../../src/docker/labels.js';
import { DRILL_PREFIX } from '../../src/verify/drill.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker } from '../harness/docker.js';
import { killLive, startCli } from '../harness/live.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/**
 * A `verify --deep` drill killed with SIGKILL while its scratch MariaDB server runs leaves that server and its
 * scratch volume behind (its `finally` never ran, and a drill writes no state file). The next command must
 * remove them. The drill's objects are found by their owner label (`host:pid:starttime:bootid`, src/common/owner.ts),
 * so drills of tests running in parallel are never mistaken for this one's.
 */
interface Found {
  containers: { name: string; running: boolean }[];
  volumes: string[];
}

async function ownedBy(pid: number): Promise<Found> {
  const label = [HELPER_LABEL];
  const mine = (labels: Record<string, string> | null | undefined) =>
    String(labels?.[HELPER_LABEL] ?? '').startsWith(`${hostname()}:${pid}:`);
  const d = docker();
  const cs = (await d.listContainers({ all: true, filters: { label } })).filter((c) => mine(c.Labels));
  const vs = ((await d.listVolumes({ filters: { label } })).Volumes ?? []).filter((v) => mine(v.Labels));
  return {
    containers: cs.map((c) => ({
      name: (c.Names[0] ?? '').replace(/^\//, ''),
      running: c.State === 'running',
    })),
    volumes: vs.map((v) => v.Name),
  };
}

describe('drill leftovers: a verify --deep killed mid-drill', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let snapshot: string;
  let killed: Found = { containers: [], volumes: [] };
  const env = () => cliEnv(stack.project, dirs, { BACKUP_COMPRESSION: 'gzip' });

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 10, bigMb: 1, users: 50, logs: 50 } }),
      tempDirs('drill'),
    ]);
    const r = await runCli(['backup', '--json'], env(), { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    snapshot = (JSON.parse(r.stdout) as { id: string }).id;
  }, 300_000);
  afterAll(async () => {
    killLive();
    // Only if the test failed: the sweep under test did not remove them.
    const d = docker();
    for (const c of killed.containers)
      await d
        .getContainer(c.name)
        .remove({ force: true, v: true })
        .catch(() => undefined);
    for (const v of killed.volumes)
      await d
        .getVolume(v)
        .remove({ force: true })
        .catch(() => undefined);
    await stack?.remove();
    await dirs?.remove();
  });

  it('the next command removes its scratch server and volume; the next drill passes', async () => {
    const run = startCli(['verify', snapshot, '--deep'], env(), 300_000);
    const pid = run.child.pid ?? 0;
    // The kill lands while the drill's scratch MariaDB server (`moodle-backup-drill-…-db`) runs.
    await run.waitFor(
      'the drill scratch server running',
      async () => {
        killed = await ownedBy(pid);
        return killed.containers.some((c) => c.running && c.name.startsWith(`${DRILL_PREFIX}-`));
      },
      240_000,
    );
    run.child.kill('SIGKILL');
    expect((await run.exited).signal).toBe('SIGKILL');
    expect(killed.volumes.filter((v) => v.startsWith(`${DRILL_PREFIX}-`)).length).toBeGreaterThan(0);

    // The next command (a drill of its own) starts by removing what the dead one left.
    const next = await runCli(['verify', snapshot, '--deep'], env(), { timeoutMs: 300_000 });
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout).toMatch(new RegExp(`${snapshot}\\s+mariadb_data\\s+drill\\s+ok\\s`));
    expect(await ownedBy(pid)).toEqual({ containers: [], volumes: [] });
    const d = docker();
    const names = [
      ...((await d.listVolumes()).Volumes ?? []).map((v) => v.Name),
      ...(await d.listContainers({ all: true })).map((c) => (c.Names[0] ?? '').replace(/^\//, '')),
    ];
    for (const n of [...killed.containers.map((c) => c.name), ...killed.volumes])
      expect(names, `${n} is left`).not.toContain(n);
  }, 600_000);
});
