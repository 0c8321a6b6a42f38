import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { mariadbEngine } from '../../src/database/mariadb.js';
import { postgresEngine } from '../../src/database/postgres.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import { DATAROOT } from '../harness/moodle.js';
import { createPgStack, PG, type PgStack } from '../harness/pg-stack.js';
import { runInTerminal, terminalLines } from '../harness/pty.js';
import { createTestBucket, s3Env, s3Host } from '../harness/s3.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/** The file volumes of an online snapshot (the database's volume is its dump). */
const FILE_VOLUMES = ['moodle_data', 'moodledata_data'];
/** The dump's line: the database service's name, `.sql`. */
const DUMP = 'mariadb.sql';

async function newestManifest(archive: string): Promise<Manifest> {
  const ids = (await readdir(archive)).filter((d) => /^\d{8}T/.test(d)).sort();
  return JSON.parse(await readFile(join(archive, ids.at(-1) as string, 'manifest.json'), 'utf8')) as Manifest;
}

/** The screen line just above the first log line whose message starts with `message`. */
function lineAbove(lines: string[], message: string): string | undefined {
  const at = lines.findIndex((l) => l.includes(`INFO: ${message}`));
  return at > 0 ? lines[at - 1] : undefined;
}

const noJson = (lines: string[]) => lines.filter((l) => l.trimStart().startsWith('{'));

describe('progress of every phase on a terminal (online mode, incremental store)', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let env: NodeJS.ProcessEnv;
  /** The first snapshot: online, so it holds a dump. */
  let online: string;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 300, blobKb: 16, bigMb: 4, users: 2000, logs: 60_000 } }),
      tempDirs('tty-phases'),
    ]);
    env = cliEnv(stack.project, dirs, { TERM: 'xterm', NO_COLOR: '1', BACKUP_MODE: 'online' });
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('online backup: the dump and the new blobs each draw a line that reaches 100%; no JSON', async () => {
    const r = await runInTerminal(['backup'], env, { timeoutMs: 110_000 });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(noJson(lines), r.stdout).toEqual([]);
    // The dump's last line is on screen when the dump's log line comes.
    expect(lineAbove(lines, 'dumped '), r.stdout).toMatch(new RegExp(`^${DUMP} 100% \\S+/\\S+ \\S+/s$`));
    // No snapshot before: the total is the server's own figure (InnoDB's statistics: far from exact on a
    // freshly seeded database), an estimate, until the dump ends.
    const said = await mariadbEngine.dataBytes(docker(), stack.containers.mariadb, ['bitnami_moodle']);
    expect(said).toBeGreaterThan(16 * 1024);
    for (const l of lines.filter((x) => x.startsWith(`${DUMP} `) && !x.includes(' 100% ')))
      expect(l, r.stdout).toMatch(new RegExp(`^${DUMP} ~\\d+% \\S+/~\\S+`));
    // Nothing stops in online mode: the blobs are stored after the dump, all of them new.
    const m = await newestManifest(dirs.archive);
    online = m.id;
    const blobs = m.volumes.find((v) => v.name === 'moodledata_data')?.blobs;
    expect(blobs?.added).toBeGreaterThan(0);
    const stored = r.stdout.match(/^moodledata_data blobs 100% \S+ (\d+) files /m)?.[1];
    expect(stored, r.stdout).toBe(String(blobs?.added));
    // Counted alongside the storing: bytes and files only until the count is in, then the exact count.
    for (const l of lines.filter((x) => x.startsWith('moodledata_data blobs ') && !x.includes(' 100% ')))
      expect(l, r.stdout).toMatch(/^moodledata_data blobs (\S+ \d+ files|\d+% \S+\/\S+ \d+\/300 files)/);
    for (const l of lines.filter((x) => / \d+% /.test(x))) expect(l.length, l).toBeLessThanOrEqual(80);
  });

  it('the same backup without a terminal: JSON lines only, no progress', async () => {
    const r = await runCli(['backup'], env, { timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(0);
    const stderr = r.stderr.split('\n').filter((l) => l !== '');
    expect(logLines(r.stderr)).toHaveLength(stderr.length);
    expect(r.stderr).not.toContain('\r');
    expect(r.stderr).not.toMatch(/ \d+% /);
  });

  it('stop mode: the blobs new since the last snapshot are stored before the stop; their line ends at their exact count', async () => {
    // Five new files in Moodle's pool, as uploads would add them.
    await execOk(stack.containers.moodle, [
      'bash',
      '-c',
      `cd ${DATAROOT} && for i in 1 2 3 4 5; do head -c 300000 /dev/urandom >t; h=$(sha1sum t | cut -c1-40); mkdir -p filedir/\${h:0:2}/\${h:2:2}; mv t filedir/\${h:0:2}/\${h:2:2}/$h; done`,
    ]);
    const r = await runInTerminal(['backup'], { ...env, BACKUP_MODE: 'stop' }, { timeoutMs: 110_000 });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(noJson(lines), r.stdout).toEqual([]);
    // The store's log line of that phase follows the phase's last line.
    expect(lineAbove(lines, 'moodledata_data: '), r.stdout).toMatch(
      /^moodledata_data blobs 100% 1\.4M\/1\.4M 5 files \S+\/s$/,
    );
    for (const l of lines.filter((x) => x.startsWith('moodledata_data blobs ') && !x.includes(' 100% ')))
      expect(l, r.stdout).toMatch(/^moodledata_data blobs (\S+ \d+ files|\d+% \S+\/1\.4M \d+\/5 files)/);
  });

  it('restore: the verify pass reads every archive and the dump to 100% before anything changes; then the volumes, their blobs and the dump load', async () => {
    const online = JSON.parse((await runCli(['snapshots', '--json'], env, { timeoutMs: 60_000 })).stdout) as {
      id: string;
      mode?: string;
    }[];
    // The first snapshot (online, with a dump); a safety snapshot is taken, so every archive is verified first.
    const id = online.map((s) => s.id).sort()[0] as string;
    const m = JSON.parse(await readFile(join(dirs.archive, id, 'manifest.json'), 'utf8')) as Manifest;
    expect(m.database?.file).toBe('mariadb.sql.zst');
    const r = await runInTerminal(['restore', id, '--yes'], env, { timeoutMs: 300_000 });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(noJson(lines), r.stdout).toEqual([]);
    for (const v of FILE_VOLUMES)
      expect(lineAbove(lines, `verified ${v}`), r.stdout).toMatch(new RegExp(`^${v} 100% `));
    expect(lineAbove(lines, 'verified mariadb.sql.zst'), r.stdout).toMatch(
      new RegExp(`^${DUMP} 100% .* │ all 100% `),
    );
    // The blobs placed: the blob list's count, exact from the start.
    const count = m.volumes.find((v) => v.name === 'moodledata_data')?.blobs?.count;
    expect(r.stdout).toMatch(new RegExp(`^moodledata_data blobs 100% \\S+ ${count} files `, 'm'));
    expect(lines.filter((l) => l.startsWith('moodledata_data blobs ') && l.includes('~'))).toEqual([]);
    // The dump loaded into the fresh server: its line ends before the row counts are compared and logged.
    expect(lineAbove(lines, 'loaded mariadb.sql.zst'), r.stdout).toMatch(
      new RegExp(`^${DUMP} 100% .* │ all 100% `),
    );
    for (const l of lines.filter((x) => / \d+% /.test(x))) expect(l.length, l).toBeLessThanOrEqual(80);
  }, 300_000);

  it("verify --deep: each archive's check and drill, and the dump's check and load, reach 100%", async () => {
    const r = await runInTerminal(['verify', online, '--deep'], env, { timeoutMs: 300_000 });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(noJson(lines), r.stdout).toEqual([]);
    for (const v of FILE_VOLUMES) {
      expect(lineAbove(lines, `verified ${v}`), r.stdout).toMatch(new RegExp(`^${v} 100% `));
      expect(lineAbove(lines, `drill ${v}:`), r.stdout).toMatch(new RegExp(`^${v} drill 100% `));
    }
    expect(lineAbove(lines, 'verified mariadb.sql.zst'), r.stdout).toMatch(new RegExp(`^${DUMP} 100% `));
    // The drill's load logs as a restore's does, right after its last line.
    expect(lineAbove(lines, 'loaded mariadb.sql.zst into moodle-backup-drill'), r.stdout).toMatch(
      new RegExp(`^${DUMP} drill 100% .* │ all 100% `),
    );
  }, 300_000);

  it("restore from a remote target: each archive's download into the spool, then its check, reach 100%", async () => {
    const bucket = await createTestBucket('tty');
    const remote = s3Env(stack, dirs, bucket, s3Host(), {
      TERM: 'xterm',
      NO_COLOR: '1',
      BACKUP_MODE: 'online',
    });
    const b = await runCli(['backup'], remote, { timeoutMs: 110_000 });
    expect(b.code, b.stderr).toBe(0);
    const r = await runInTerminal(['restore', 'latest', '--yes', '--no-safety-snapshot'], remote, {
      timeoutMs: 300_000,
    });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(noJson(lines), r.stdout).toEqual([]);
    for (const item of [...FILE_VOLUMES, DUMP]) {
      const file = item === DUMP ? 'mariadb.sql.zst' : item;
      const verified = lines.findIndex((l) => l.includes(`INFO: verified ${file}`));
      expect(lines[verified - 1], r.stdout).toMatch(new RegExp(`^${item} 100% `));
      // The download came first: the stored bytes, exact from the manifest.
      const download = lines.findIndex((l) => l.startsWith(`${item} download 100% `));
      expect(download, r.stdout).toBeGreaterThan(-1);
      expect(download).toBeLessThan(verified);
    }
    for (const l of lines.filter((x) => / \d+% /.test(x))) expect(l).not.toContain('~');
  }, 300_000);
});

describe('progress of a PostgreSQL dump on a terminal', () => {
  let stack: PgStack;
  let dirs: TempDirs;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createPgStack(), tempDirs('tty-pg')]);
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it("online backup: the dump's line reaches 100%; its first total is what pg_database_size says", async () => {
    const said = await postgresEngine.dataBytes(docker(), stack.containers.postgres, [PG.db]);
    // The seeded tables and the catalogs of one database: megabytes, not zero.
    expect(said).toBeGreaterThan(1024 * 1024);
    const env = cliEnv(stack.project, dirs, { TERM: 'xterm', NO_COLOR: '1', BACKUP_MODE: 'online' });
    const r = await runInTerminal(['backup'], env, { timeoutMs: 110_000 });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(noJson(lines), r.stdout).toEqual([]);
    expect(lineAbove(lines, 'dumped '), r.stdout).toMatch(/^postgres\.sql 100% \S+\/\S+ \S+\/s$/);
    for (const l of lines.filter((x) => x.startsWith('postgres.sql ') && !x.includes(' 100% ')))
      expect(l, r.stdout).toMatch(/^postgres\.sql ~\d+% \S+\/~\S+/);
  });
});
