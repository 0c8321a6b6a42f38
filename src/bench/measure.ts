import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type MemoryPeaks, MemorySampler, ProcTree } from './proc-memory.js';

export interface Timed {
  ms: number;
  /** CPU seconds of the command and its children (user + system), from the shell's `times`. */
  cpuS?: number;
  /** Peak memory of the pipeline's processes (tar, zstd, … under the shell). */
  memory: MemoryPeaks;
}

/**
 * Runs a bash pipeline with `pipefail` and times it; a non-zero exit fails the bench with the command's
 * stderr. Baselines run this way, as a shell user would type them.
 */
export async function timeShell(script: string, timeoutMs = 900_000): Promise<Timed> {
  const t0 = performance.now();
  const r = await run('bash', ['-o', 'pipefail', '-c', `${script}\ntimes >&3`], timeoutMs, true);
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`baseline failed (${r.code}): ${script}\n${r.stderr.slice(-2000)}`);
  // `times` prints the shell's and then its children's user/system times, e.g. "0m1.234s 0m0.100s".
  const secs = [...r.fd3.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return { ms, cpuS: secs.length === 4 ? secs.reduce((a, b) => a + b, 0) : undefined, memory: r.memory };
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  fd3: string;
  peakRssKb: number;
  /** CPU seconds of the process and its reaped children (zstd filters), from the last sample. */
  cpuS: number;
  memory: MemoryPeaks;
}

/** USER_HZ: /proc times are in clock ticks, 100 per second on Linux. */
const TICKS_PER_S = 100;

/** utime + stime + cutime + cstime of a process, in clock ticks; 0 when it is gone. */
export function procCpuTicks(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at state; utime is field 14.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [11, 12, 13, 14].reduce((a, i) => a + Number(f[i] ?? 0), 0);
  } catch {
    return 0;
  }
}

/** CPU seconds the Docker daemon spent (its own and its reaped children's, e.g. archive helpers). */
export function dockerdCpuS(): number {
  try {
    const pid = Number(execFileSync('pidof', ['dockerd'], { encoding: 'utf8' }).trim().split(' ')[0]);
    return procCpuTicks(pid) / TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

/** A child's output (stdout, stderr and, when piped, fd 3) and exit; `sample` runs every 50 ms meanwhile. */
export function collectSampled(
  child: ChildProcess,
  timeoutMs: number,
  sample: () => void,
): Promise<{ code: number | null; stdout: string; stderr: string; fd3: string }> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let fd3 = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    (child.stdio[3] as NodeJS.ReadableStream | undefined)?.on('data', (d: Buffer) => {
      fd3 += d.toString();
    });
    const sampler = setInterval(sample, 50);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(sampler);
      clearTimeout(timer);
      resolve({ code, stdout, stderr, fd3 });
    });
  });
}

async function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
  withFd3 = false,
  env?: NodeJS.ProcessEnv,
): Promise<RunResult> {
  const child = spawn(cmd, args, {
    env: env ?? process.env,
    stdio: withFd3 ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
  });
  // VmHWM is the kernel's own high-water mark of the process's resident set; sampling it often enough
  // means the last reading before exit is the peak.
  let peakRssKb = 0;
  let cpuTicks = 0;
  const memory = new MemorySampler((pid) => pid === child.pid);
  const tree = child.pid ? new ProcTree(child.pid) : undefined;
  const r = await collectSampled(child, timeoutMs, () => {
    peakRssKb = Math.max(peakRssKb, vmHwmKb(child.pid));
    cpuTicks = Math.max(cpuTicks, procCpuTicks(child.pid));
    if (tree) memory.sample(tree.scan());
  });
  return { ...r, peakRssKb, cpuS: cpuTicks / TICKS_PER_S, memory: memory.result() };
}

function vmHwmKb(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export interface CliRun {
  ms: number;
  stdout: string;
  logs: Record<string, unknown>[];
  /** Peak resident set of the sidecar's node process (not its helpers or the zstd child), MB. */
  peakRssMb: number;
  /** Peaks of its children (tar, zstd), apart from node's. */
  memory: MemoryPeaks;
  /** CPU seconds of the sidecar process and its zstd children. */
  cpuS: number;
  startedAtMs: number;
  endedAtMs: number;
}

/** Node flags of the image's command wrappers (Dockerfile): the bench measures the sidecar as it ships. */
export const SIDECAR_NODE_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=512', '--expose-gc'];

/**
 * The node that runs the sidecar's CLI: `BENCH_NODE`, else the bench's own. The image runs Node 22, whose zstd
 * in zlib writes packs as frames (store/frames.ts); provision.sh records such a node in .tmp/cli-node.
 */
export const SIDECAR_NODE = process.env.BENCH_NODE || process.execPath;

/** Environment the image sets for every process (Dockerfile `ENV`) that bears on memory; a caller's value wins. */
export const SIDECAR_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '32768',
};

/** Runs the built sidecar CLI as its own process (as `docker exec sidecar backup` would). */
export async function runSidecar(
  cli: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 900_000,
): Promise<CliRun> {
  const startedAtMs = Date.now();
  const t0 = performance.now();
  const r = await run(SIDECAR_NODE, [...SIDECAR_NODE_FLAGS, cli, ...args], timeoutMs, false, {
    ...SIDECAR_ENV,
    ...env,
  });
  const ms = performance.now() - t0;
  if (r.code !== 0)
    throw new Error(`sidecar ${args.join(' ')} failed (${r.code}):\n${r.stderr.slice(-3000)}`);
  const logs = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const logged = Number(logs.find((l) => l.step === 'done')?.peakRssMb ?? 0);
  return {
    ms,
    stdout: r.stdout,
    logs,
    peakRssMb: Math.max(Math.round(r.peakRssKb / 1024), logged),
    memory: r.memory,
    cpuS: r.cpuS,
    startedAtMs,
    endedAtMs: Date.now(),
  };
}
