import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { fingerprintVolume, type VolumeFingerprint } from '../harness/fingerprint.js';
import {
  killLive,
  type LiveCli,
  type LogLine,
  msUntilRunning,
  readState,
  seeded,
  startCli,
} from '../harness/live.js';
import { diffMinusExcludes } from '../harness/moodle.js';
import { createTestBucket, s3Env } from '../harness/s3.js';
import { freePort } from '../harness/s3-server.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';
import { FaultProxy, type Rule } from './fault-proxy.js';
import { Figures } from './figures.js';

/**
 * Crash suite: SIGKILL the CLI at seeded random moments across backup and restore, then start the sidecar
 * again (`serve`, as a restarted container would) and check what a user would: the stack runs within 30 s,
 * recovery logs no error of its own, no partial snapshot is listed, every snapshot verifies, and an
 * interrupted restore is reported with the command that rolls it back (which is then run, and the volume's
 * content must be what it was before the restore). S3 traffic goes through
 * the fault proxy (passing it through unless a point sets rules), which tells which multipart uploads were left
 * open at the kill and whether recovery aborted them.
 *
 * FAULT_POINTS and FAULT_SEED choose the points. The default (`npm test`) is one point per step a kill can
 * interrupt (6): the two kinds marked `variant` interrupt the same step as another kind, from the other target
 * (a backup's read into the S3 spool is the local read's recovery — resume the stack, no upload is open yet;
 * a restore's extract from S3 is the local extract's — the volume's swap record decides, not where the bytes
 * came from), and cost a third of the suite (the S3 restore and its S3 roll-back: ~100 of ~300 s).
 * FAULT_POINTS=N runs N points over all 8 kinds (point n kills kind n mod 8); `npm run test:faults` runs 20.
 */
const SEED = Number(process.env.FAULT_SEED ?? 9);

type Target = 'local' | 's3';

interface Kind {
  name: string;
  target: Target;
  args: string[];
  /** What the kill waits for (named in the error when it never comes), and until when at most. */
  waitFor: string;
  until(run: LiveCli, dirs: TempDirs): boolean | Promise<boolean>;
  timeoutMs: number;
  /** The kill lands `r * spreadMs` after `until` holds; `r` is the point's seeded random number in [0, 1). */
  spreadMs: number;
  /** Proxy rules while the killed run runs. */
  rules?: Rule[];
  /** The kill must find a multipart upload open (the point is meant to land mid-upload). */
  uploadOpen?: boolean;
  /** The same step as another kind, from the other target: left out of the default run (see above). */
  variant?: true;
}

const logged =
  (pred: (l: LogLine) => boolean) =>
  (run: LiveCli): boolean =>
    run.log(pred) !== undefined;
const unpacking = async (_run: LiveCli, dirs: TempDirs) =>
  ['emptied', 'staging'].includes((await readState(dirs))?.volumes?.moodledata_data ?? '');
const stopped = (n: number) => async (_run: LiveCli, dirs: TempDirs) =>
  ((await readState(dirs))?.quiesced.length ?? 0) >= n;
const uploading = async (_run: LiveCli, dirs: TempDirs) =>
  ((await readState(dirs))?.uploads?.length ?? 0) >= 1;
const after = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RESTORE = ['restore', 'latest', '--yes', '--volume', 'moodledata_data'];

/** Resolves at the moment to kill the run of `kind`. */
async function arm(kind: Kind, run: LiveCli, dirs: TempDirs, r: number): Promise<void> {
  await run.waitFor(kind.waitFor, () => kind.until(run, dirs), kind.timeoutMs);
  await after(r * kind.spreadMs);
}

/** With FAULT_POINTS, point n kills kind n mod 8: any 8 consecutive points cover every kind. */
const KINDS: Kind[] = [
  {
    name: 'backup, mid-read of moodledata_data',
    target: 'local',
    args: ['backup'],
    waitFor: 'moodle_data read',
    until: logged((l) => l.step === 'read' && l.volume === 'moodle_data'),
    timeoutMs: 120_000,
    spreadMs: 400,
  },
  {
    name: 'backup, mid-upload to S3',
    target: 's3',
    args: ['backup'],
    waitFor: 'a multipart upload recorded in the state file',
    until: uploading,
    timeoutMs: 120_000,
    spreadMs: 400,
    // 4 MB/s: a 16 MiB part takes 4 s, so the upload is still open when the kill lands.
    rules: [{ op: 'UploadPart', fault: { kind: 'slow', bytesPerSecond: 4_000_000 }, times: Infinity }],
    uploadOpen: true,
  },
  {
    name: 'restore, mid-extract',
    target: 'local',
    args: RESTORE,
    waitFor: 'volume being unpacked',
    until: unpacking,
    timeoutMs: 180_000,
    spreadMs: 500,
  },
  {
    name: 'restore, mid-verify',
    target: 'local',
    args: RESTORE,
    waitFor: 'restore plan',
    until: logged((l) => l.step === 'plan'),
    timeoutMs: 60_000,
    spreadMs: 300,
  },
  {
    name: 'backup, mid-quiesce',
    target: 'local',
    args: ['backup'],
    waitFor: 'first stop',
    until: stopped(1),
    timeoutMs: 60_000,
    spreadMs: 150,
  },
  {
    name: 'restore, mid-safety-snapshot',
    target: 'local',
    args: RESTORE,
    // After verification the safety snapshot is the first to stop a container (the restore's own stop comes
    // after it): a stop then means the safety snapshot is being read.
    waitFor: 'the safety snapshot stopping the stack',
    until: async (run, dirs) => logged((l) => l.step === 'verify')(run) && (await stopped(1)(run, dirs)),
    timeoutMs: 120_000,
    spreadMs: 600,
  },
  {
    name: 'backup to S3, mid-read into the spool',
    target: 's3',
    args: ['backup'],
    waitFor: 'stack stopped',
    until: stopped(2),
    timeoutMs: 60_000,
    spreadMs: 800,
    variant: true,
  },
  {
    name: 'restore from S3, mid-extract',
    target: 's3',
    args: RESTORE,
    waitFor: 'volume being unpacked',
    until: unpacking,
    timeoutMs: 180_000,
    spreadMs: 500,
    variant: true,
  },
];

const STEPS = KINDS.filter((k) => !k.variant);
const POINTS = Number(process.env.FAULT_POINTS ?? STEPS.length);
/** The default run: each step once; with FAULT_POINTS, every kind in turn. */
const ROTATION = process.env.FAULT_POINTS ? KINDS : STEPS;

/**
 * The error-level (pino ≥ 50) lines of a restarted sidecar's log, but for `expected`: recovery must log no
 * error of its own, whatever the CLI's exit code.
 */
function errorLines(stderr: string, expected?: RegExp): string[] {
  return logLines(stderr)
    .filter((l) => Number(l.level) >= 50 && !expected?.test(String(l.msg)))
    .map((l) => JSON.stringify(l).slice(0, 500));
}

interface Snap {
  id: string;
  status: string;
}

describe(`crash suite: SIGKILL at ${POINTS} seeded points (seed ${SEED})`, () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let bucket: string;
  let proxy: FaultProxy;
  const figures = new Figures('crash', 'recovered');
  const okBefore: Record<Target, Set<string>> = { local: new Set(), s3: new Set() };
  const rand = seeded(SEED);
  const points = Array.from({ length: POINTS }, (_, i) => ({
    n: i + 1,
    kind: ROTATION[i % ROTATION.length] as Kind,
    r: rand(),
  }));

  const env = (t: Target, extra: Record<string, string> = {}) =>
    t === 'local'
      ? cliEnv(stack.project, dirs, { BACKUP_COMPRESSION: 'gzip', ...extra })
      : // The S3 kinds kill open multipart uploads of archives: whole-volume archives, so the dataroot's is
        // large. The store's packs (local kinds, and test/faults/prune-crash.test.ts) are killed elsewhere.
        s3Env(stack, dirs, bucket, proxy.host, {
          BACKUP_COMPRESSION: 'gzip',
          BACKUP_INCREMENTAL: 'off',
          ...extra,
        });

  async function snapshots(t: Target): Promise<Snap[]> {
    const r = await runCli(['snapshots', '--json'], env(t), { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Snap[];
  }

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({ seed: { bigMb: 100 } }),
      tempDirs('crash'),
      createTestBucket('crash'),
    ]);
    proxy = new FaultProxy(Number(new URL(inject('s3').endpoint).port));
    await proxy.start();
    // Something to restore on each target, and the earlier snapshots that must survive every crash.
    for (const t of ['local', 's3'] as const) {
      const r = await runCli(['backup', '--json'], env(t), { timeoutMs: 240_000 });
      expect(r.code, r.stderr).toBe(0);
      okBefore[t].add((JSON.parse(r.stdout) as { id: string }).id);
    }
  }, 600_000);
  afterAll(async () => {
    killLive();
    figures.save();
    await proxy?.stop();
    await stack?.remove();
    await dirs?.remove();
  });

  figures.each(
    points,
    'point $n: SIGKILL during $kind.name',
    async ({ n, kind, r }) => {
      // A restore that is killed must leave the data as it was, once rolled back: compared by content.
      const isRestore = kind.args === RESTORE;
      const before: VolumeFingerprint | undefined = isRestore
        ? await fingerprintVolume(stack.volumes.moodledata_data)
        : undefined;
      proxy.set(kind.rules ?? []);
      const run = startCli(kind.args, env(kind.target));
      await arm(kind, run, dirs, r);
      expect(run.ended(), `the run ended before the kill point:\n${run.stderr().slice(-2000)}`).toBe(false);
      run.child.kill('SIGKILL');
      const killed = await run.exited;
      expect(killed.signal).toBe('SIGKILL');
      const state = await readState(dirs);
      // Multipart uploads the server started and the killed run neither completed nor aborted.
      const open = proxy.orphans();
      if (kind.uploadOpen) expect(open.length, 'no multipart upload was open at the kill').toBeGreaterThan(0);
      // Each was in the state file before its first part went out: that is what recovery works from.
      const recorded = (state?.uploads ?? []).map((u) => u.uploadId);
      for (const id of open) expect(recorded).toContain(id);
      proxy.set([]);
      const unfinished =
        state?.operation === 'restore' && Object.values(state.volumes ?? {}).some((s) => s !== 'restored');

      // Start the sidecar again: its first act resumes what the killed run left stopped.
      const port = await freePort();
      const t0 = Date.now();
      const serve = startCli(
        ['serve'],
        env(kind.target, { BACKUP_HEALTH_HOST: '127.0.0.1', BACKUP_HEALTH_PORT: String(port) }),
        120_000,
      );
      const runningMs = await msUntilRunning(stack, t0, 60_000);
      await serve.waitForLog('serve ready', (l) => l.step === 'schedule', 60_000);
      serve.child.kill('SIGTERM');
      const served = await serve.exited;
      console.log(
        `crash point "${kind.name}" (r=${r.toFixed(3)}): ${open.length} multipart upload(s) open, ${proxy.stats.aborted.size} aborted by recovery; killed with state ${state ? `${state.operation} ${JSON.stringify(state.volumes ?? {})} quiesced=${state.quiesced.length}` : 'none'}; stack running ${runningMs} ms after restart`,
      );
      expect(runningMs).toBeLessThan(30_000);
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      expect(served.stderr).not.toMatch(/error \[/);
      // The one error recovery may log is its report of the unfinished restore (checked below).
      expect(
        errorLines(served.stderr, unfinished ? /^an interrupted restore left volumes incomplete/ : undefined),
      ).toEqual([]);
      if (state) expect(served.stderr).toMatch(/"step":"recover"/);
      // Recovery sent AbortMultipartUpload for every upload the killed run left open.
      expect(open.filter((id) => !proxy.stats.aborted.has(id))).toEqual([]);

      if (unfinished) {
        expect(served.stderr).toMatch(/an interrupted restore left volumes incomplete/);
        const cmd = `restore ${state?.safetySnapshot} --yes`;
        expect(served.stderr).toContain(`roll back with: ${cmd}`);
        const rollback = await runCli(cmd.split(' '), env(kind.target), { timeoutMs: 240_000 });
        expect(rollback.code, rollback.stderr).toBe(0);
      }
      // Rolled back, or killed before any volume was touched: the data is what it was before the restore.
      // (Killed after the volume was restored, it holds the restored snapshot, which this does not compare.)
      const restoredAll =
        state?.operation === 'restore' && !unfinished && Object.keys(state.volumes ?? {}).length > 0;
      if (before && !restoredAll) {
        const now = await fingerprintVolume(stack.volumes.moodledata_data);
        expect(diffMinusExcludes(before, now), 'moodledata_data differs from before the restore').toEqual([]);
      }

      // No partial snapshot is listed, every earlier one is still there, and every new one verifies. The last
      // point verifies them all again (verifying all at every point made the run grow with the square of it).
      for (const t of ['local', 's3'] as const) {
        const list = await snapshots(t);
        expect(list.filter((s) => s.status !== 'ok')).toEqual([]);
        const ids = new Set(list.map((s) => s.id));
        for (const id of okBefore[t]) expect(ids.has(id), `${t} snapshot ${id} is gone`).toBe(true);
        const fresh = [...ids].filter((id) => !okBefore[t].has(id));
        const runs = n === POINTS ? [['verify', '--all']] : fresh.map((id) => ['verify', id]);
        for (const args of runs) {
          const v = await runCli([...args, '--json'], env(t), { timeoutMs: 240_000 });
          expect(v.code, `${args.join(' ')}: ${v.stderr}`).toBe(0);
        }
        for (const id of ids) okBefore[t].add(id);
      }
    },
    600_000,
  );
});
