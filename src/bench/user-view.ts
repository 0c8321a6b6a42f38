import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { createDataset, type Dataset, type Sizes } from './datasets.js';
import { median } from './inc-runs.js';
import { collectSampled, dockerdCpuS, timeShell } from './measure.js';
import {
  containerCpuS,
  containerPidsFile,
  type MemoryPeaks,
  MemorySampler,
  mergePeaks,
  readPids,
} from './proc-memory.js';
import { type Row, round, row, type Target, target } from './report.js';
import { type BenchEnv, childColumns, fingerprint, q, timeline } from './scenarios.js';
import { BENCH_LABEL, removeBenchResources } from './stack.js';

/**
 * The user's view (issue 19, item 4; `BENCH_ONLY=user`): the sidecar IMAGE in a Compose-like stack, set up
 * as the README's compose example sets it up (the project's volumes at /backup/<name>, the Docker socket,
 * /archive bound to a host directory, a state volume, `serve` as its command), timed as a user times it:
 * `docker exec <sidecar> backup` and `docker exec <sidecar> restore latest --yes --no-safety-snapshot`,
 * from the command's start to its exit, against host `tar -c <volume dirs> | zstd -T0 -3 > file` and
 * `zstd -dc file | tar -x`, interleaved round by round (BENCH_REPEAT rounds), medians compared.
 */

export interface UserSample {
  ms: number;
  cpuS?: number;
  dockerdCpuS?: number;
  memory?: MemoryPeaks;
  downtimeMs?: number;
  /** Exec start to the command's plan log line (what it decided to do), ms. */
  planMs?: number;
  rawBytes?: number;
  steps?: string[];
}

export interface UserGroupResult {
  rows: Row[];
  targets: Target[];
  checks: string[];
  figures: string[];
  startup: { key: string; ms: number[] }[];
  image: string;
}

interface Sidecar {
  name: string;
  id: string;
}

const MB = 1024 * 1024;

/** The image built from this checkout (scripts/build-image.sh is cached by a hash of its inputs). */
export function sidecarImage(root: string, log: (m: string) => void): string {
  const given = process.env.BENCH_SIDECAR_IMAGE;
  if (given) return given;
  const image = process.env.IMAGE ?? 'moodle-backup-sidecar:dev';
  log(`user: image ${image} (scripts/build-image.sh)`);
  try {
    execFileSync('bash', [join(root, 'scripts', 'build-image.sh')], {
      env: { ...process.env, IMAGE: image },
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * MB,
    });
  } catch (err) {
    const out = String((err as { stderr?: Buffer }).stderr ?? '');
    throw new Error(`scripts/build-image.sh failed:\n${out.slice(-3000)}`);
  }
  return image;
}

/** The sidecar service of compose.example.yml, in the data set's project. */
export async function startSidecar(
  docker: Docker,
  runId: string,
  ds: Dataset,
  image: string,
  archive: string,
): Promise<Sidecar> {
  const project = ds.stack.project;
  const state = `${project}_backup_state`;
  await docker.createVolume({
    Name: state,
    Labels: {
      'com.docker.compose.project': project,
      'com.docker.compose.volume': 'backup_state',
      [BENCH_LABEL]: runId,
    },
  });
  const name = `${project}-backup-1`;
  const c = await docker.createContainer({
    name,
    Image: image,
    Env: [
      'BACKUP_COMPRESSION=zstd',
      'BACKUP_MODE=stop',
      'BACKUP_STOP_CONTAINER_TIMEOUT=2m',
      'BACKUP_KEEP_DAILY=7',
      'BACKUP_KEEP_WEEKLY=4',
      'BACKUP_KEEP_MONTHLY=6',
      'BACKUP_KEEP_YEARLY=2',
      // Whole-volume archives, as every row compared with tar | zstd (the mix's dataroot has a filedir/, which
      // `auto` would put in the blob store: that is the incremental group's measurement).
      'BACKUP_INCREMENTAL=off',
      // Each round reads every volume: an unchanged code volume's archive would be linked, not compressed.
      'BACKUP_REUSE_ARCHIVES=off',
    ],
    Labels: {
      'com.docker.compose.project': project,
      'com.docker.compose.service': 'backup',
      'com.docker.compose.container-number': '1',
      'com.docker.compose.oneoff': 'False',
      'moodle-backup.stop': 'false',
      [BENCH_LABEL]: runId,
    },
    HostConfig: {
      Binds: [
        '/var/run/docker.sock:/var/run/docker.sock',
        `${archive}:/archive`,
        `${state}:/var/lib/moodle-backup`,
        ...Object.entries(ds.stack.volumes).map(([short, vol]) => `${vol}:/backup/${short}`),
      ],
      // The sidecar reaches the engine through the socket; the bench's stack has no network either.
      NetworkMode: 'none',
    },
  });
  await c.start();
  return { name, id: c.id };
}

/**
 * `docker exec <sidecar> <args>` timed from the host, start to exit. Memory and CPU come from the
 * container's cgroup: the processes that appear in it during the exec (node of the command, its tar and
 * zstd; not `serve` nor the image's health check, which are not the command's descendants).
 */
async function execTimed(
  sc: Sidecar,
  args: string[],
  timeoutMs = 900_000,
): Promise<UserSample & { startedAtMs: number; endedAtMs: number }> {
  const pidsFile = containerPidsFile(sc.id);
  const before = new Set(pidsFile ? readPids(pidsFile) : []);
  const main = new Set<number>();
  const mine = new Set<number>();
  const sampler = new MemorySampler((pid) => main.has(pid));
  const sample = () => {
    if (!pidsFile) return;
    const now = readPids(pidsFile).filter((p) => !before.has(p));
    for (const p of now) {
      if (mine.has(p)) continue;
      const cmd = cmdline(p);
      if (cmd.includes('/app/dist/cli/main.js')) {
        main.add(p);
        mine.add(p);
      } else if (mine.has(ppid(p))) mine.add(p);
    }
    sampler.sample(now.filter((p) => mine.has(p)));
  };
  const cpu0 = containerCpuS(sc.id);
  const d0 = dockerdCpuS();
  const startedAtMs = Date.now();
  const t0 = performance.now();
  const child = spawn('docker', ['exec', sc.name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r = await collectSampled(child, timeoutMs, sample);
  const ms = performance.now() - t0;
  if (r.code !== 0)
    throw new Error(`docker exec ${sc.name} ${args.join(' ')} failed (${r.code}):\n${r.stderr.slice(-3000)}`);
  const cpu1 = containerCpuS(sc.id);
  const logs = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const plan = logs.find((l) => l.step === 'plan' && l.snapshot !== undefined);
  const raw = logs.filter((l) => l.step === 'read' && l.rawBytes !== undefined);
  const mem = sampler.result();
  return {
    ms,
    cpuS: cpu0 === undefined || cpu1 === undefined ? undefined : round(cpu1 - cpu0, 2),
    dockerdCpuS: round(dockerdCpuS() - d0, 2),
    memory: mem,
    planMs: plan ? Date.parse(String(plan.time)) - startedAtMs : undefined,
    rawBytes: raw.length ? raw.reduce((a, l) => a + Number(l.rawBytes), 0) : undefined,
    steps: timeline(logs, startedAtMs),
    startedAtMs,
    endedAtMs: Date.now(),
  };
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function ppid(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

const STEPS = ['tar|zstd', 'backup', 'zstd -d|tar -x', 'restore'] as const;
type Step = (typeof STEPS)[number];

const LABELS: Record<Step, [Row['kind'], string]> = {
  'tar|zstd': ['baseline', 'host tar -c VOLUME_DIRS | zstd -T0 -3 > FILE'],
  backup: ['product', 'docker exec sidecar backup'],
  'zstd -d|tar -x': ['baseline', 'host zstd -dc FILE | tar -x'],
  restore: ['product', 'docker exec sidecar restore latest --yes --no-safety-snapshot'],
};

export async function runUserGroup(g: {
  docker: Docker;
  runId: string;
  image: string;
  sidecarImage: string;
  sizes: Sizes;
  env: BenchEnv;
  log: (m: string) => void;
}): Promise<UserGroupResult> {
  const { docker, runId, env, log } = g;
  const ds = await createDataset(docker, runId, g.image, g.sizes, 'mix');
  execFileSync('sync');
  log(`user: ${ds.files} files, ${(ds.bytes / MB).toFixed(0)} MB; sidecar ${g.sidecarImage}`);
  const archive = join(env.work, 'user-archive');
  const baseFile = join(env.work, 'user-base.tar.zst');
  const untarDir = join(env.work, 'user-untar');
  await mkdir(archive, { recursive: true });
  const sc = await startSidecar(docker, runId, ds, g.sidecarImage, archive);
  const rel = Object.values(ds.stack.dirs).map((d) => q(d.replace(/^\/+/, '')));
  const before = await fingerprint(env, ds);
  // Node's module files in the page cache, as on a machine where the sidecar has run before.
  await execTimed(sc, ['snapshots']);
  const samples = new Map<string, UserSample[]>();
  const startup = new Map<string, number[]>();
  const add = (k: string, s: UserSample) => samples.set(k, [...(samples.get(k) ?? []), s]);
  const checks: string[] = [];
  // On this machine's ext4 (no journal) the inode allocator skips inodes freed in the last ~60 s, so creating
  // files right after many were deleted costs several times more (docs/design.md, "Where the time goes").
  // A restore ends by deleting the volumes' old content: the next file-creating step of either side waits
  // until that is BENCH_USER_SETTLE_S (65) seconds old, so neither pays for the other's deletions.
  const settleMs = Number(process.env.BENCH_USER_SETTLE_S ?? 65) * 1000;
  let lastDeleteMs = 0;
  const settle = async () => {
    const wait = lastDeleteMs + settleMs - Date.now();
    if (lastDeleteMs > 0 && wait > 0) {
      log(`  user: waiting ${(wait / 1000).toFixed(0)} s after the last restore's deletions`);
      await sleep(wait);
    }
    execFileSync('sync');
  };
  for (let round_ = 0; round_ < env.repeat; round_++) {
    for (const [key, argv] of [
      ['docker exec sidecar true', ['true']],
      ['docker exec sidecar backup --help', ['backup', '--help']],
    ] as const) {
      const s = await execTimed(sc, [...argv]);
      startup.set(key, [...(startup.get(key) ?? []), s.ms]);
    }
    for (const step of STEPS) {
      execFileSync('sync');
      let s: UserSample;
      if (step === 'tar|zstd') {
        await rm(baseFile, { force: true });
        const t = await timeShell(`tar -C / -c ${rel.join(' ')} | zstd -T0 -3 -q > ${q(baseFile)}`);
        s = { ms: t.ms, cpuS: t.cpuS, memory: t.memory };
      } else if (step === 'zstd -d|tar -x') {
        // Each round's output is kept until the group ends: deleting 31,000 files here would slow the
        // restore's unpack right after it (below), and the sidecar restore's own deletion is waited out.
        const into = join(untarDir, String(round_ + 1));
        await mkdir(into, { recursive: true });
        await settle();
        const t = await timeShell(`zstd -dc ${q(baseFile)} | tar -C ${q(into)} -x`);
        s = { ms: t.ms, cpuS: t.cpuS, memory: t.memory };
      } else {
        if (step === 'restore') await settle();
        const argv = step === 'backup' ? ['backup'] : ['restore', 'latest', '--yes', '--no-safety-snapshot'];
        const e = await execTimed(sc, argv);
        if (step === 'restore') lastDeleteMs = Date.now();
        await sleep(300); // the last events arrive after the command has exited
        s = {
          ...e,
          downtimeMs: env.events.downtime(ds.stack.project, e.startedAtMs - 1000, e.endedAtMs + 1000)?.ms,
        };
      }
      log(`  user ${step} #${round_ + 1}: ${(s.ms / 1000).toFixed(2)} s`);
      add(step, s);
      if (step === 'restore') {
        const after = await fingerprint(env, ds);
        const same = after === before;
        checks.push(
          `user: restored bytes (round ${round_ + 1}) ${same ? 'equal' : 'DIFFER FROM'} the original`,
        );
        if (!same) throw new Error('user: the restored volumes differ from the originals');
      }
    }
  }
  const bytes = median((samples.get('backup') ?? []).map((s) => s.rawBytes ?? Number.NaN));
  const rows = STEPS.map((step) => userRow(step, samples.get(step) ?? [], bytes));
  const m = (k: Step) => rows.find((r) => r.key === `${LABELS[k][0]}:user ${k}`) as Row;
  const medPlan = (k: Step) => median((samples.get(k) ?? []).map((s) => s.planMs ?? Number.NaN));
  const start = [...startup].map(([key, ms]) => ({ key, ms }));
  const help = median(startup.get('docker exec sidecar backup --help') ?? []);
  const bare = median(startup.get('docker exec sidecar true') ?? []);
  const targets = [
    target(
      'user view: backup / host tar|zstd -T0 -3',
      m('tar|zstd').ms / m('backup').ms,
      '>=',
      0.8,
      'docker exec start to exit, medians of interleaved rounds',
    ),
    target(
      'user view: restore / host zstd -dc|tar -x',
      m('zstd -d|tar -x').ms / m('restore').ms,
      '>=',
      0.8,
      'docker exec start to exit, medians of interleaved rounds',
    ),
    target(
      'user view: docker exec backup --help (s)',
      help / 1000,
      '<=',
      0.3,
      `docker exec true: ${(bare / 1000).toFixed(2)} s`,
    ),
  ];
  const figures = [
    `user: docker exec true ${(bare / 1000).toFixed(2)} s, backup --help ${(help / 1000).toFixed(2)} s (medians of ${env.repeat})`,
    `user: exec start to the plan line: backup ${(medPlan('backup') / 1000).toFixed(2)} s, restore ${(medPlan('restore') / 1000).toFixed(2)} s (medians)`,
  ];
  await rm(archive, { recursive: true, force: true });
  await rm(baseFile, { force: true });
  await rm(untarDir, { recursive: true, force: true });
  await removeBenchResources(docker, runId);
  return { rows, targets, checks, figures, startup: start, image: g.sidecarImage };
}

function userRow(step: Step, xs: UserSample[], bytes: number): Row {
  const [kind, label] = LABELS[step];
  const ms = xs.map((s) => s.ms);
  const med = (f: (s: UserSample) => number | undefined) => median(xs.map((s) => f(s) ?? Number.NaN));
  const opt = (x: number) => (Number.isFinite(x) ? x : undefined);
  const mem = mergePeaks(xs.map((s) => s.memory));
  const cpu = opt(med((s) => s.cpuS));
  const dockerd = opt(med((s) => s.dockerdCpuS));
  return row({
    dataset: 'user',
    key: `${kind}:user ${step}`,
    label,
    kind,
    bytes,
    ms: median(ms),
    cpuS: cpu === undefined ? undefined : round(cpu, 2),
    dockerdCpuS: dockerd === undefined ? undefined : round(dockerd, 2),
    downtimeMs: kind === 'product' ? opt(med((s) => s.downtimeMs)) : undefined,
    peakRssMb: kind === 'product' ? Math.round(mem.mainKb / 1024) : undefined,
    ...childColumns(mem),
    note: `median of ${xs.length} (${(Math.min(...ms) / 1000).toFixed(2)}–${(Math.max(...ms) / 1000).toFixed(2)} s)`,
    steps: xs.at(-1)?.steps,
  });
}
