import { expect } from 'vitest';
import { HELPER_LABEL } from '../../src/docker/labels.js';
import type { RunState } from '../../src/stack/state.js';
import { logLines } from './cli.js';
import { docker } from './docker.js';
import {
  type DbFingerprint,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from './fingerprint.js';
import { msUntilRunning } from './live.js';
import { diffMinusExcludes } from './moodle.js';
import { until } from './serve.js';
import { logsSince, type SidecarStack } from './sidecar.js';
import { DB } from './stack.js';

/**
 * One crash round's checks on a sidecar-in-a-stack (sidecar.ts), whatever killed it (`docker kill`, an engine
 * restart): what a user checks after the sidecar comes back.
 */

/** `docker kill -s KILL <sidecar>`; returns the state file the killed run left (null: none). */
export async function killSidecar(s: SidecarStack): Promise<RunState | null> {
  await docker().getContainer(s.sidecar).kill({ signal: 'SIGKILL' });
  await until(
    'the killed sidecar to stop',
    async () => ((await docker().getContainer(s.sidecar).inspect()).State.Running ? undefined : true),
    10_000,
    50,
  );
  return s.state();
}

/** Waits until the state file exists and `pred` holds for it (polled every 50 ms), at most `timeoutMs`. */
export function stateWhere(
  s: SidecarStack,
  what: string,
  pred: (st: RunState) => boolean,
  timeoutMs = 120_000,
) {
  return until(
    what,
    async () => {
      const st = await s.state();
      return st && pred(st) ? st : undefined;
    },
    timeoutMs,
    50,
  );
}

/**
 * The stack runs again within 30 s of `restartedAt` (the milliseconds it took), the restarted sidecar logged
 * the recovery of the killed run (when it left a state file) and logged no error but `allowedErrors`.
 */
export async function expectStackBack(
  s: SidecarStack,
  o: { restartedAt: number; stateAtKill: RunState | null; allowedErrors?: RegExp },
): Promise<number> {
  const ms = await msUntilRunning(s.stack, o.restartedAt, 30_000);
  const since = o.restartedAt - 1_000;
  const runId = o.stateAtKill?.runId;
  if (runId) {
    await until(
      `the restarted sidecar to log its recovery of ${runId}`,
      async () => {
        const lines = logLines(await logsSince(s.sidecar, { sinceMs: since }));
        return lines.some((l) => l.step === 'recover' && l.runId === runId) ? true : undefined;
      },
      30_000,
    );
  }
  const log = await logsSince(s.sidecar, { sinceMs: since });
  const errors = logLines(log).filter(
    (l) => Number(l.level) >= 50 && !(o.allowedErrors?.test(String(l.msg)) ?? false),
  );
  expect(errors, log.slice(-3000)).toEqual([]);
  return ms;
}

/**
 * The sidecar is usable again: /healthz 200, the next `docker exec <sidecar> backup` is not refused (LOCKED)
 * and succeeds, no partial snapshot is listed, every snapshot verifies, no helper of this sidecar is left.
 */
export async function expectUsable(s: SidecarStack): Promise<void> {
  const port = await s.healthPort();
  const health = await until(
    '/healthz 200',
    async () => {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      return r.status === 200 ? r.status : undefined;
    },
    30_000,
  );
  expect(health).toBe(200);
  const backup = await s.exec(['backup', '--json']);
  expect(backup.exitCode, `next backup: ${backup.stderr.slice(-2000)}`).toBe(0);
  expect(await s.stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  const list = await s.exec(['snapshots', '--json']);
  expect(list.exitCode, list.stderr).toBe(0);
  const snaps = JSON.parse(list.stdout) as { id: string; status: string }[];
  expect(snaps.filter((x) => x.status !== 'ok')).toEqual([]);
  const verify = await s.exec(['verify', '--all', '--json']);
  expect(verify.exitCode, verify.stderr.slice(-2000)).toBe(0);
  // Helpers carry their maker's identity; the sidecar's host name is its container's short id.
  const host = (await docker().getContainer(s.sidecar).inspect()).Config.Hostname;
  const ours = (labels: Record<string, string> | null | undefined) =>
    String(labels?.[HELPER_LABEL] ?? '').startsWith(`${host}:`);
  const helpers = (await docker().listContainers({ all: true, filters: { label: [HELPER_LABEL] } })).filter(
    (c) => ours(c.Labels),
  );
  expect(helpers.map((c) => c.Names[0])).toEqual([]);
  const { Volumes } = await docker().listVolumes({ filters: { label: [HELPER_LABEL] } });
  expect((Volumes ?? []).filter((v) => ours(v.Labels)).map((v) => v.Name)).toEqual([]);
}

export interface StackData {
  files: Record<'moodle_data' | 'moodledata_data', VolumeFingerprint>;
  db: DbFingerprint;
}

/** The site's files (minus Moodle's excludes, compared by diffMinusExcludes) and database, as a user compares. */
export async function stackData(s: SidecarStack): Promise<StackData> {
  await s.stack.waitForDb(60_000);
  const v = s.stack.volumes;
  return {
    files: {
      moodle_data: await fingerprintVolume(v.moodle_data),
      moodledata_data: await fingerprintVolume(v.moodledata_data),
    },
    db: await fingerprintDb(s.stack.sql, DB.name),
  };
}

/** Each volume and the database equal one of the states: `[]` when so, else what differs from each. */
export function notOneOf(got: StackData, states: Record<string, StackData>): string[] {
  const out: string[] = [];
  for (const v of ['moodle_data', 'moodledata_data'] as const) {
    const diffs = Object.entries(states).map(([name, st]) => ({
      name,
      d: diffMinusExcludes(st.files[v], got.files[v]),
    }));
    if (!diffs.some((x) => x.d.length === 0))
      out.push(`${v}: ${diffs.map((x) => `vs ${x.name} ${x.d.slice(0, 5).join('; ')}`).join(' | ')}`);
  }
  const same = Object.values(states).some((st) => JSON.stringify(st.db) === JSON.stringify(got.db));
  if (!same) out.push(`database equals none of ${Object.keys(states).join(', ')}`);
  return out;
}
