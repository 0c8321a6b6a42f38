import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

interface JsonSnapshot {
  id: string;
  time: string;
  status: string;
  kind: string | null;
  volumes: { name: string; rawBytes: number; storedBytes: number }[];
  storedBytes: number;
  durationMs: number | null;
  downtimeMs: number | null;
  error: string | null;
}

/** A directory a crashed run leaves: a valid-looking id, an archive, no manifest. */
const INCOMPLETE_ID = '20240101T000000Z-dead';

/** Columns of a padded text table row (separated by two or more spaces). */
const columns = (line: string) => line.trim().split(/ {2,}/);

describe('CLI: snapshots, restore refusals, usage', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let env: NodeJS.ProcessEnv;
  let manifest: Manifest;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 2, users: 100, logs: 200 } }),
      tempDirs('cli'),
    ]);
    env = cliEnv(stack.project, dirs);
    const empty = await runCli(['snapshots'], env, { timeoutMs: 60_000 });
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stdout).toContain('no snapshots at local:');
    const r = await runCli(['backup', '--json'], env, { timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(0);
    manifest = JSON.parse(r.stdout) as Manifest;
    await mkdir(join(dirs.archive, INCOMPLETE_ID), { recursive: true });
    await writeFile(join(dirs.archive, INCOMPLETE_ID, 'moodle_data.tar.zst'), Buffer.alloc(4096, 7));
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('`snapshots` prints a table: header, the new snapshot ok, the leftover incomplete', async () => {
    const r = await runCli(['snapshots'], env, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(columns(lines[0] ?? '')).toEqual([
      'ID',
      'TIME (UTC)',
      'KIND',
      'VOLUMES',
      'STORED',
      'DURATION',
      'STATUS',
    ]);
    expect(lines).toHaveLength(3);
    // Newest first.
    const ok = columns(lines[1] ?? '');
    expect(ok[0]).toBe(manifest.id);
    expect(ok[2]).toBe('manual');
    expect(ok[3]).toBe('mariadb_data,moodle_data,moodledata_data');
    expect(ok[4]).toMatch(/^\d+(\.\d)? (B|KiB|MiB|GiB)$/);
    expect(ok[5]).toMatch(/^\d+(\.\d)? (ms|s)$|min/);
    expect(ok[6]).toBe('ok');
    const incomplete = columns(lines[2] ?? '');
    expect(incomplete[0]).toBe(INCOMPLETE_ID);
    expect(incomplete[1]).toBe('2024-01-01T00:00:00Z');
    expect(incomplete.slice(2)).toEqual(['-', '-', '4.0 KiB', '-', 'incomplete']);
  });

  it('`snapshots --json` parses: status, volumes with rawBytes/storedBytes matching the files', async () => {
    const r = await runCli(['snapshots', '--json'], env, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as JsonSnapshot[];
    expect(list.map((s) => [s.id, s.status])).toEqual([
      [manifest.id, 'ok'],
      [INCOMPLETE_ID, 'incomplete'],
    ]);
    const [ok, incomplete] = list as [JsonSnapshot, JsonSnapshot];
    expect(ok.kind).toBe('manual');
    expect(ok.volumes.map((v) => v.name)).toEqual(['mariadb_data', 'moodle_data', 'moodledata_data']);
    for (const v of ok.volumes) {
      expect(v.rawBytes).toBeGreaterThan(0);
      expect(v.storedBytes).toBeGreaterThan(0);
      const file = manifest.volumes.find((m) => m.name === v.name)?.file ?? '';
      expect((await stat(join(dirs.archive, manifest.id, file))).size).toBe(v.storedBytes);
    }
    const manifestSize = (await stat(join(dirs.archive, manifest.id, 'manifest.json'))).size;
    // The moodledata volume's blob list is a file of the snapshot too (its blobs are in the shared store).
    const blobLists = manifest.volumes.reduce((a, v) => a + (v.blobs?.storedBytes ?? 0), 0);
    expect(blobLists).toBeGreaterThan(0);
    expect(ok.storedBytes).toBe(ok.volumes.reduce((a, v) => a + v.storedBytes, 0) + blobLists + manifestSize);
    expect(ok.durationMs).toBe(manifest.timings.totalMs);
    expect(ok.downtimeMs).toBe(manifest.timings.downtimeMs);
    expect(ok.error).toBeNull();
    expect(incomplete).toMatchObject({ kind: null, volumes: [], storedBytes: 4096, durationMs: null });
  });

  it('`restore <incomplete id> --yes` refuses with SNAPSHOT_NOT_FOUND (exit 6) and stops nothing', async () => {
    const since = Date.now();
    const r = await runCli(['restore', INCOMPLETE_ID, '--yes'], env, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toMatch(new RegExp(`error \\[SNAPSHOT_NOT_FOUND\\]: .*${INCOMPLETE_ID}`));
    const events = (await projectEvents(stack.project, since)).filter((e) => e.time >= since * 1e6);
    expect(lifecycle(events)).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    // A prefix that only matches the incomplete snapshot is refused the same way.
    const byPrefix = await runCli(['restore', '20240101', '--yes'], env, { timeoutMs: 60_000 });
    expect(byPrefix.code, byPrefix.stderr).toBe(6);
    expect(byPrefix.stderr).toContain('SNAPSHOT_NOT_FOUND');
  });

  it('`backup --help` exits 0 and describes the options, without any configuration', async () => {
    const r = await runCli(['backup', '--help'], { PATH: process.env.PATH }, { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Usage: moodle-backup backup');
    expect(r.stdout).toContain('--json');
  });

  it('an unknown command exits 2 (usage) and names it', async () => {
    const r = await runCli(['frobnicate'], env, { timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    expect(r.stdout).toBe('');
  });
});
