import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { addBlobs, emptyDir, removeBlobs } from './blob-data.js';
import type { IncDataset } from './inc-datasets.js';
import {
  datarootNewBytes,
  interleave,
  type Sample,
  type Step,
  shellSample,
  sidecarSample,
} from './inc-runs.js';
import { backupScript, initScript, installed, type Tool, tarZstdScript, untarScript } from './inc-tools.js';
import { type BenchEnv, fingerprint } from './scenarios.js';

/**
 * Issue 17's measurements on one data set, in four interleaved phases on the same data: 1st runs (the
 * product's full and incremental backups, tar | zstd, restic, borg, rsync), 2nd runs with nothing changed,
 * backups after 1% new files, and restores (into empty volumes, and into a dataroot that lacks 1%).
 */
export interface IncContext {
  env: BenchEnv;
  inc: IncDataset;
  /** This set's own work directory. */
  dir: string;
  repeat: number;
  log: (m: string) => void;
}

export interface IncResult {
  samples: Map<string, Sample[]>;
  /** Bytes every check compared: one line per restore. */
  checks: string[];
  /** The full backup's stored bytes of the dataroot (its compressed size). */
  datarootCompressed: number;
}

const TOOLS: Tool[] = ['restic', 'borg', 'rsync'];

const p = (c: IncContext, name: string) => join(c.dir, name);

function tools(): Tool[] {
  return TOOLS.filter((t) => installed(t));
}

/** Untimed: a fresh, empty directory or tool repository. */
async function freshRepo(c: IncContext, tool: Tool | 'dir', path: string): Promise<void> {
  if (tool === 'dir') {
    await rm(path, { recursive: true, force: true });
    await mkdir(path, { recursive: true });
  } else await shellSample(initScript(tool, c.dir, path));
}

function backup(c: IncContext, archive: string, extra: Record<string, string> = {}): Promise<Sample> {
  return sidecarSample(c.env, c.inc.ds, ['backup'], { BACKUP_ARCHIVE: archive, ...extra });
}

function firstSteps(c: IncContext): Step[] {
  const full = p(c, 'full');
  const inc = p(c, 'inc');
  const steps: Step[] = [
    {
      key: 'tar|zstd',
      prepare: () => freshRepo(c, 'dir', p(c, 'tarzst')),
      run: () => shellSample(tarZstdScript(c.inc.ds, p(c, 'tarzst'))),
    },
    {
      key: 'full',
      prepare: () => freshRepo(c, 'dir', full),
      run: () => backup(c, full, { BACKUP_INCREMENTAL: 'off' }),
    },
    { key: 'inc-1st', prepare: () => freshRepo(c, 'dir', inc), run: () => backup(c, inc) },
  ];
  for (const t of tools()) {
    steps.push({
      key: `${t}-1st`,
      prepare: () => freshRepo(c, t === 'rsync' ? 'dir' : t, p(c, t)),
      run: () => shellSample(backupScript(t, c.dir, c.inc.ds, p(c, t), 'r1')),
    });
  }
  return steps;
}

function secondSteps(c: IncContext, round: number): Step[] {
  const steps: Step[] = [{ key: 'inc-2nd', run: () => backup(c, p(c, 'inc')) }];
  for (const t of tools()) {
    const run = `r2-${round}`;
    steps.push({
      key: `${t}-2nd`,
      // rsync: each 2nd run is a new snapshot directory linked to the 1st; the previous one goes first.
      prepare:
        t === 'rsync'
          ? () => rm(join(p(c, t), `r2-${round - 1}`), { recursive: true, force: true })
          : undefined,
      run: () => shellSample(backupScript(t, c.dir, c.inc.ds, p(c, t), run, 'r1')),
    });
  }
  return steps;
}

/** Each round adds fresh blobs: 1% of the dataroot's files and bytes, then backs up. */
function onePercentSteps(c: IncContext, round: number): Step[] {
  const files = Math.max(1, Math.round(c.inc.dataroot.gen.files / 100));
  return [
    {
      key: 'inc-1pct',
      prepare: async () => {
        addBlobs(
          c.inc.ds.stack.dirs.moodledata_data as string,
          files,
          c.inc.datarootBytes / 100,
          7919 * (round + 1),
        );
      },
      run: () => backup(c, p(c, 'inc')),
    },
  ];
}

/** Restores of the newest snapshot: into emptied volumes, `zstd -d | tar -x` of the same data, and 1% missing. */
function restoreSteps(c: IncContext, snapshot: string, check: (what: string) => Promise<void>): Step[] {
  const restore = async (what: string) => {
    const s = await sidecarSample(c.env, c.inc.ds, ['restore', snapshot, '--yes', '--no-safety-snapshot'], {
      BACKUP_ARCHIVE: p(c, 'inc'),
    });
    await check(what);
    return s;
  };
  const dirs = Object.values(c.inc.ds.stack.dirs);
  return [
    { key: 'restore-full', prepare: async () => dirs.forEach(emptyDir), run: () => restore('full restore') },
    {
      key: 'zstd -d|tar -x',
      prepare: () => freshRepo(c, 'dir', p(c, 'untar')),
      run: () => shellSample(untarScript(c.inc.ds, p(c, 'tarzst'), p(c, 'untar'))),
    },
    {
      key: 'restore-1pct',
      prepare: async () => {
        removeBlobs(c.inc.ds.stack.dirs.moodledata_data as string, c.inc.dataroot.paths, 100);
      },
      run: () => restore('restore with 1% missing'),
    },
  ];
}

function merge(into: Map<string, Sample[]>, from: Map<string, Sample[]>): void {
  for (const [k, v] of from) into.set(k, [...(into.get(k) ?? []), ...v]);
}

/** The CI smoke's piece: one 1st and one 2nd run (nothing changed) of a small dataroot. */
export async function measureSmoke(c: IncContext): Promise<Map<string, Sample[]>> {
  await freshRepo(c, 'dir', p(c, 'inc'));
  return interleave(
    1,
    () => [
      { key: 'inc-1st', run: () => backup(c, p(c, 'inc')) },
      { key: 'inc-2nd', run: () => backup(c, p(c, 'inc')) },
    ],
    c.log,
  );
}

export async function measureIncremental(c: IncContext): Promise<IncResult> {
  await mkdir(c.dir, { recursive: true });
  const samples = new Map<string, Sample[]>();
  c.log(`${c.inc.ds.name}: 1st runs`);
  merge(samples, await interleave(c.repeat, () => firstSteps(c), c.log));
  await rm(p(c, 'full'), { recursive: true, force: true });
  c.log(`${c.inc.ds.name}: 2nd runs, nothing changed`);
  merge(samples, await interleave(c.repeat, (r) => secondSteps(c, r), c.log));
  c.log(`${c.inc.ds.name}: 1% new files`);
  merge(samples, await interleave(c.repeat, (r) => onePercentSteps(c, r), c.log));
  const last = samples.get('inc-1pct')?.at(-1)?.manifest?.id as string;
  c.log(`${c.inc.ds.name}: restores of ${last}`);
  await freshRepo(c, 'dir', p(c, 'tarzst'));
  await shellSample(tarZstdScript(c.inc.ds, p(c, 'tarzst'))); // the yardstick's archive of the same data
  const before = await fingerprint(c.env, c.inc.ds);
  const checks: string[] = [];
  const check = async (what: string) => {
    const same = (await fingerprint(c.env, c.inc.ds)) === before;
    checks.push(`${c.inc.ds.name}: ${what}: restored bytes ${same ? 'equal' : 'DIFFER FROM'} the original`);
    if (!same) throw new Error(`${c.inc.ds.name}: ${what}: the restored volumes differ from the originals`);
  };
  merge(samples, await interleave(c.repeat, () => restoreSteps(c, last, check), c.log));
  const full = samples.get('full') ?? [];
  const datarootCompressed = datarootNewBytes(full.at(-1)?.manifest);
  return { samples, checks, datarootCompressed };
}
