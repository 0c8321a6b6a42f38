import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dataset } from './datasets.js';
import { runSidecar, timeShell } from './measure.js';
import { type BenchEnv, sidecarEnv, timeline } from './scenarios.js';

/** One timed run: wall time of the whole process, its CPU, and (the sidecar's) peak RSS and downtime. */
export interface Sample {
  ms: number;
  cpuS?: number;
  peakRssMb?: number;
  downtimeMs?: number;
  manifest?: IncManifest;
  steps?: string[];
}

export interface IncManifest {
  id: string;
  volumes: {
    name: string;
    rawBytes: number;
    storedBytes: number;
    blobs?: {
      storedBytes: number;
      count: number;
      bytes: number;
      added: number;
      packBytes: number;
      base?: { storedBytes: number; added: boolean };
    };
  }[];
}

/** A shell baseline, timed as a whole process after a `sync` (no run pays for the one before it). */
export async function shellSample(script: string): Promise<Sample> {
  execFileSync('sync');
  const r = await timeShell(script);
  return { ms: r.ms, cpuS: r.cpuS };
}

/** The sidecar CLI once (backup or restore), with its downtime from Docker's events. */
export async function sidecarSample(
  env: BenchEnv,
  ds: Dataset,
  args: string[],
  extra: Record<string, string>,
): Promise<Sample> {
  execFileSync('sync');
  const run = await runSidecar(env.cli, [...args, '--json'], sidecarEnv(env, ds, extra));
  await sleep(300); // the last events arrive after the CLI has exited
  const down = env.events.downtime(ds.stack.project, run.startedAtMs - 1000, run.endedAtMs + 1000);
  const manifest = args[0] === 'backup' ? (JSON.parse(run.stdout) as IncManifest) : undefined;
  return {
    ms: run.ms,
    cpuS: run.cpuS,
    peakRssMb: run.peakRssMb,
    downtimeMs: down?.ms,
    manifest,
    steps: timeline(run.logs, run.startedAtMs),
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** A step of an interleaved round: untimed preparation, then the timed run. */
export interface Step {
  key: string;
  prepare?: () => Promise<void>;
  run: () => Promise<Sample>;
}

/**
 * Runs `rounds` rounds of A B C …, in the same order every round, so every figure's median comes from runs
 * spread over the same stretch of this shared machine's load. Returns each step's samples by key.
 */
export async function interleave(
  rounds: number,
  steps: (round: number) => Step[],
  log: (m: string) => void,
): Promise<Map<string, Sample[]>> {
  const out = new Map<string, Sample[]>();
  for (let r = 0; r < rounds; r++) {
    for (const s of steps(r)) {
      await s.prepare?.();
      const sample = await s.run();
      log(`  ${s.key} #${r + 1}: ${(sample.ms / 1000).toFixed(2)} s`);
      out.set(s.key, [...(out.get(s.key) ?? []), sample]);
    }
  }
  return out;
}

/** The dataroot volume of a snapshot (the one whose blobs are in the store), or undefined. */
export function datarootOf(m: IncManifest | undefined): IncManifest['volumes'][number] | undefined {
  return m?.volumes.find((v) => v.blobs) ?? m?.volumes.find((v) => v.name.includes('moodledata'));
}

/** Bytes a backup added for the dataroot: its tarball, its blob list and the packs it wrote. */
export function datarootNewBytes(m: IncManifest | undefined): number {
  const v = datarootOf(m);
  if (!v) return Number.NaN;
  const b = v.blobs;
  // A shared base list this run wrote counts as its bytes; one it only named does not.
  return v.storedBytes + (b ? b.storedBytes + b.packBytes + (b.base?.added ? b.base.storedBytes : 0) : 0);
}
