import { spawn, spawnSync } from 'node:child_process';
import { readdir, rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { runBackup } from '../../src/backup/run.js';
import { silentLogger } from '../../src/observe/logger.js';
import { createBackend } from '../../src/storage/index.js';
import type { VerifyReport } from '../../src/verify/types.js';
import { Figures } from '../faults/figures.js';
import { CLI, type CliResult, runCli } from '../harness/cli.js';
import { CLI_NODE, CLI_NODE_FLAGS, imageEnv } from '../harness/cli-node.js';
import { cliEnv, type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import {
  diffFingerprints,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { minusExcludes } from '../harness/moodle.js';
import {
  copySnapshot,
  corruptFileInArchive,
  flipByte,
  makeTar,
  replaceArchive,
  type SnapshotCopy,
  type TarEntry,
  zstd,
} from '../harness/snapshot-tamper.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

const FILE_VOLUMES = ['moodle_data', 'moodledata_data'] as const;
type StackState = Awaited<ReturnType<typeof stackState>>;

async function stackState(stack: MoodleStack) {
  const files: Record<string, VolumeFingerprint> = {};
  for (const v of FILE_VOLUMES) files[v] = await fingerprintVolume(stack.volumes[v]);
  return { files, db: await fingerprintDb(stack.sql, DB.name) };
}

function expectSame(a: StackState, b: StackState) {
  for (const v of FILE_VOLUMES) {
    // Everything but what the Moodle excludes leave out (README "Excludes").
    const [fa, fb] = [a.files[v] as VolumeFingerprint, b.files[v] as VolumeFingerprint].map(
      minusExcludes,
    ) as [VolumeFingerprint, VolumeFingerprint];
    expect(diffFingerprints(fa, fb), v).toEqual([]);
    expect(fb.digest, v).toBe(fa.digest);
  }
  expect(b.db).toEqual(a.db);
}

interface Corruption {
  name: string;
  damage: (c: SnapshotCopy) => Promise<unknown>;
  code: number;
  stderr: RegExp[];
}

const CORRUPTIONS: Corruption[] = [
  {
    name: 'one flipped byte in the middle of an archive',
    damage: (c) => flipByte(c.archive('moodledata_data')),
    code: 7,
    stderr: [/error \[INTEGRITY_FAILED\]/, /volume moodledata_data/, /sha256|decompress/],
  },
  {
    name: 'a truncated archive',
    damage: (c) => truncate(c.archive('moodle_data'), Math.floor(c.volume('moodle_data').storedBytes / 2)),
    code: 7,
    stderr: [/error \[INTEGRITY_FAILED\]/, /volume moodle_data/, /truncated/],
  },
  {
    name: 'a missing archive',
    damage: (c) => rm(c.archive('mariadb_data')),
    code: 7,
    stderr: [/error \[INTEGRITY_FAILED\]/, /volume mariadb_data/, /is missing/],
  },
  {
    name: 'a manifest with a wrong sha256',
    damage: async (c) => {
      c.volume('moodle_data').sha256 = 'ab'.repeat(32);
      await c.save();
    },
    code: 7,
    stderr: [/error \[INTEGRITY_FAILED\]/, /volume moodle_data/, /the manifest says (ab){32}/],
  },
  {
    name: 'a missing manifest',
    damage: (c) => rm(join(c.dir, 'manifest.json')),
    code: 6,
    stderr: [/error \[SNAPSHOT_NOT_FOUND\]/, /no manifest\.json/],
  },
  {
    name: 'the wrong codec in the manifest (zstd archives recorded as gzip)',
    damage: async (c) => {
      c.manifest.codec = 'gzip';
      await c.save();
    },
    code: 7,
    stderr: [/error \[INTEGRITY_FAILED\]/, /volume mariadb_data/, /does not decompress as gzip/],
  },
];

/** Entries every crafted archive starts with: what a harmless volume looks like. */
const BENIGN: TarEntry[] = [
  { name: './', type: 'directory', mode: 0o755 },
  { name: './ok.txt', body: 'fine\n', mode: 0o644 },
];

const HOSTILE: { name: string; entries: TarEntry[]; entry: string; also?: string }[] = [
  { name: 'a path with ..', entries: [{ name: '../evil', body: 'x' }], entry: '../evil' },
  { name: 'an absolute path', entries: [{ name: '/abs/evil', body: 'x' }], entry: '/abs/evil' },
  {
    name: 'a symlink to / and a file written through it',
    entries: [
      { name: 'link', type: 'symlink', linkname: '/' },
      { name: 'link/etc/evil', body: 'x' },
    ],
    entry: 'link/etc/evil',
  },
  {
    // The link alone is restored (a volume may hold one: config.php -> ../shared/…); writing through it is not.
    name: 'a relative symlink climbing out and a file written through it',
    entries: [
      { name: 'up', type: 'symlink', linkname: '../../..' },
      { name: 'up/evil', body: 'x' },
    ],
    entry: 'up/evil',
  },
  {
    name: 'a character device',
    entries: [{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }],
    entry: 'null',
  },
  { name: 'a setuid file', entries: [{ name: 'suid', mode: 0o4755, body: '#!/bin/sh\n' }], entry: 'suid' },
  {
    name: 'a hard link to ../../etc/passwd',
    entries: [{ name: 'pw', type: 'link', linkname: '../../etc/passwd' }],
    entry: 'pw',
    also: '../../etc/passwd',
  },
];

/** Runs the CLI under a pseudo-terminal (util-linux `script`), answering each prompt once it appears. */
async function runPty(
  args: string[],
  env: NodeJS.ProcessEnv,
  answers: [RegExp, string][],
  timeoutMs = 240_000,
): Promise<{ code: number | null; out: string }> {
  const cmd = [CLI_NODE, ...CLI_NODE_FLAGS, CLI, ...args].map((a) => `'${a}'`).join(' ');
  const child = spawn('script', ['-qec', cmd, '/dev/null'], {
    env: imageEnv(env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  let code: number | null | undefined;
  child.on('close', (c) => {
    code = c;
  });
  const deadline = Date.now() + timeoutMs;
  const until = async (done: () => boolean, what: string) => {
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${out}`);
      await sleep(100);
    }
  };
  try {
    let from = 0;
    for (const [prompt, answer] of answers) {
      await until(() => prompt.test(out.slice(from)) || code !== undefined, `prompt ${prompt}`);
      if (code !== undefined) throw new Error(`exited ${code} before prompt ${prompt}; output:\n${out}`);
      from = out.length;
      await sleep(300);
      child.stdin.write(answer);
    }
    await until(() => code !== undefined, 'the CLI to exit');
    return { code: code ?? null, out: out.replace(/\r/g, '') };
  } finally {
    child.stdin.end();
    if (code === undefined) child.kill('SIGKILL');
  }
}

describe('restore safety: nothing is touched unless every archive is sound', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let good: Manifest;
  let atBackup: StackState;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    stack = await createMoodleStack();
    dirs = await tempDirs('safety');
    const config = testConfig(stack.project, dirs);
    good = await runBackup({
      docker: docker(),
      config,
      backend: createBackend(config.target),
      log: silentLogger(),
    });
    await stack.waitForDb();
    atBackup = await stackState(stack);
    env = cliEnv(stack.project, dirs);
  });
  // These archive cases are the other half of the hostile-input suite (test/faults/hostile-input.test.ts).
  const refused = new Figures('hostile', 'refused');
  afterAll(async () => {
    refused.save();
    await stack?.remove();
    await dirs?.remove();
  });

  /** `restore <id> --yes` must fail before anything changes: same data, no stop/start, no safety snapshot. */
  async function expectRefused(id: string, code: number, stderr: RegExp[]): Promise<CliResult> {
    const before = await stackState(stack);
    const listing = (await readdir(dirs.archive)).sort();
    const t0 = Date.now();
    const r = await runCli(['restore', id, '--yes'], env);
    const t1 = Date.now();
    expect(r.code, r.stderr).toBe(code);
    for (const re of stderr) expect(r.stderr).toMatch(re);
    expect(r.stdout).not.toContain('restored');
    expect(lifecycle(await projectEvents(stack.project, t0, t1))).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect((await readdir(dirs.archive)).sort()).toEqual(listing);
    expectSame(before, await stackState(stack));
    return r;
  }

  refused.each(CORRUPTIONS, 'refuses $name and changes nothing', async ({ damage, code, stderr }) => {
    const copy = await copySnapshot(dirs.archive, good.id);
    await damage(copy);
    await expectRefused(copy.id, code, stderr);
  });

  it('a benign archive crafted like the hostile ones passes verification (the guard is what refuses them)', async () => {
    const copy = await copySnapshot(dirs.archive, good.id);
    const tar = await makeTar(BENIGN);
    await replaceArchive(copy, 'moodledata_data', zstd(tar), tar.length);
    const r = await runCli(['verify', copy.id, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as VerifyReport;
    expect(report.results.find((x) => x.volume === 'moodledata_data')?.stats?.files).toBe(1);
  });

  refused.each(
    HOSTILE,
    'refuses an archive with $name (HOSTILE_ARCHIVE)',
    async ({ entries, entry, also }) => {
      const copy = await copySnapshot(dirs.archive, good.id);
      const tar = await makeTar([...BENIGN, ...entries]);
      await replaceArchive(copy, 'moodledata_data', zstd(tar), tar.length);
      const r = await expectRefused(copy.id, 7, [/error \[HOSTILE_ARCHIVE\]/, /volume moodledata_data/]);
      expect(r.stderr).toContain(`entry "${entry}"`);
      if (also) expect(r.stderr).toContain(also);
    },
  );

  it('interactive pick under a pseudo-terminal restores the chosen snapshot; answering "no" changes nothing', async () => {
    const hasScript = spawnSync('sh', ['-c', 'command -v script'], { stdio: 'ignore' }).status === 0;
    expect(hasScript, 'util-linux `script` is needed for a pseudo-terminal and is not installed').toBe(true);
    // Dated tomorrow, so it is row 1 of the picker even after the safety snapshot of the first run.
    const chosen = await copySnapshot(dirs.archive, good.id, { at: new Date(Date.now() + 86_400_000) });
    const vandalise = async (tag: string) => {
      await stack.sql(`UPDATE mdl_user SET lastname='Vandal-${tag}' WHERE id < 50`);
      await execOk(stack.containers.moodle, ['sh', '-c', `echo ${tag} > /bitnami/moodledata/vandal.txt`]);
    };
    await vandalise('one');
    expect((await stackState(stack)).db).not.toEqual(atBackup.db);
    const pickFirst: [RegExp, string] = [/Restore which snapshot\? \[1-\d+\]/, '1\n'];

    const yes = await runPty(['restore'], env, [pickFirst, [/Type "yes" to continue/, 'yes\n']]);
    expect(yes.code, yes.out).toBe(0);
    // On an 80-column terminal the time column gives way to the volumes (each id carries its time).
    expect(yes.out).toMatch(/#\s+ID\s+(TIME \(UTC\)\s+)?KIND\s+VOLUMES/);
    expect(yes.out).toMatch(new RegExp(`\\n1\\s+${chosen.id}\\s`));
    expect(yes.out).toContain('All archives verified.');
    expect(yes.out).toContain(`restored ${chosen.id}`);
    await stack.waitForDb();
    expectSame(atBackup, await stackState(stack));

    await vandalise('two');
    const before = await stackState(stack);
    const listing = (await readdir(dirs.archive)).sort();
    const t0 = Date.now();
    const no = await runPty(['restore'], env, [pickFirst, [/Type "yes" to continue/, 'no\n']]);
    expect(no.code, no.out).toBe(8);
    expect(no.out).toMatch(new RegExp(`\\n1\\s+${chosen.id}\\s`));
    expect(no.out).toContain('restore cancelled; nothing was changed');
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
    expect((await readdir(dirs.archive)).sort()).toEqual(listing);
    expectSame(before, await stackState(stack));
  });

  it('verify <id> passes on the good snapshot (level 1, JSON)', async () => {
    const r = await runCli(['verify', good.id, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as VerifyReport;
    expect(report.ok).toBe(true);
    expect(report.results.map((x) => `${x.volume}:${x.level}:${x.ok}`).sort()).toEqual([
      'mariadb_data:archive:true',
      'moodle_data:archive:true',
      'moodledata_data:archive:true',
      // The dataroot's Moodle files are in the store: its blob list and every pack they need are checked.
      'moodledata_data:blobs:true',
    ]);
    expect(report.results.find((x) => x.volume === 'mariadb_data')?.stats?.mariadbDatadir).toBe(true);
  });

  /** Names of drill scratch volumes and containers that exist right now. */
  async function drillLeftovers(): Promise<string[]> {
    const d = docker();
    const vols = ((await d.listVolumes()).Volumes ?? []).map((v) => v.Name);
    const ctrs = (await d.listContainers({ all: true })).map((c) => c.Names[0] ?? '');
    return [...vols, ...ctrs].filter((n) => n.includes('moodle-backup-drill-')).sort();
  }

  it('verify --deep passes on the good snapshot and removes its scratch volumes and containers', async () => {
    const leftovers = await drillLeftovers();
    const r = await runCli(['verify', good.id, '--deep'], env, { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SNAPSHOT\s+VOLUME\s+LEVEL\s+RESULT\s+DETAIL/);
    for (const v of ['mariadb_data', 'moodle_data', 'moodledata_data'])
      expect(r.stdout).toMatch(new RegExp(`${good.id}\\s+${v}\\s+drill\\s+ok\\s`));
    expect(r.stdout).toMatch(/mariadb_data\s+drill\s+ok\s.*mariadb-check: \d+ tables OK/);
    // Nothing new: a drill killed by another test may leave objects that this run's recovery sweeps away.
    expect((await drillLeftovers()).filter((n) => !leftovers.includes(n))).toEqual([]);
  }, 300_000);

  it('verify --deep finds a damaged InnoDB table in an intact archive; level 1 cannot', async () => {
    const copy = await copySnapshot(dirs.archive, good.id);
    await corruptFileInArchive(copy, 'mariadb_data', 'data/bitnami_moodle/mdl_user.ibd');
    const level1 = await runCli(['verify', copy.id], env);
    expect(level1.code, level1.stderr).toBe(0);

    const leftovers = await drillLeftovers();
    const deep = await runCli(['verify', copy.id, '--deep', '--json'], env, { timeoutMs: 300_000 });
    expect(deep.code, deep.stderr).toBe(7);
    expect(deep.stderr).toMatch(/error \[INTEGRITY_FAILED\].*mariadb_data \(drill\)/);
    const report = JSON.parse(deep.stdout) as VerifyReport;
    expect(report.ok).toBe(false);
    const failed = report.results.filter((x) => !x.ok);
    expect(failed.map((x) => `${x.volume}:${x.level}`)).toEqual(['mariadb_data:drill']);
    expect(failed[0]?.detail).toMatch(/bitnami_moodle\.mdl_user/);
    // Nothing new: a drill killed by another test may leave objects that this run's recovery sweeps away.
    expect((await drillLeftovers()).filter((n) => !leftovers.includes(n))).toEqual([]);
  }, 300_000);

  it('verify --all reports damaged and incomplete snapshots as failures and passes the good one', async () => {
    const other = await tempDirs('safety-all');
    try {
      const ok = await copySnapshot(dirs.archive, good.id, { toArchive: other.archive });
      const flipped = await copySnapshot(dirs.archive, good.id, { toArchive: other.archive });
      await flipByte(flipped.archive('moodle_data'));
      const incomplete = await copySnapshot(dirs.archive, good.id, { toArchive: other.archive });
      await rm(join(incomplete.dir, 'manifest.json'));
      const r = await runCli(['verify', '--all', '--json'], { ...env, BACKUP_ARCHIVE: other.archive });
      expect(r.code, r.stderr).toBe(7);
      const report = JSON.parse(r.stdout) as VerifyReport;
      const rows = report.results.map((x) => `${x.snapshot}:${x.volume}:${x.level}:${x.ok}`).sort();
      expect(rows).toEqual(
        [
          `${ok.id}:mariadb_data:archive:true`,
          `${ok.id}:moodle_data:archive:true`,
          `${ok.id}:moodledata_data:archive:true`,
          `${ok.id}:moodledata_data:blobs:true`,
          `${flipped.id}:mariadb_data:archive:true`,
          `${flipped.id}:moodle_data:archive:false`,
          `${flipped.id}:moodledata_data:archive:true`,
          `${flipped.id}:moodledata_data:blobs:true`,
          `${incomplete.id}:-:catalog:false`,
        ].sort(),
      );
    } finally {
      await other.remove();
    }
  });
});
