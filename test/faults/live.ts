import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { inject } from 'vitest';
import type { RunState } from '../../src/docker/state.js';
import { CLI, type CliResult, logLines } from '../harness/cli.js';
import { cliEnv, type TempDirs } from '../harness/config.js';
import type { MoodleStack } from '../harness/stack.js';

export type LogLine = Record<string, unknown>;

/** A CLI run watched while it runs, so a test can kill it at a chosen moment. */
export interface LiveCli {
  child: ChildProcess;
  stderr(): string;
  /** Resolves once `pred` holds (polled every 20 ms); rejects when the run ends first or on timeout. */
  waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void>;
  /** The first log line matching `pred`. */
  log(pred: (l: LogLine) => boolean): LogLine | undefined;
  exited: Promise<CliResult>;
  ended(): boolean;
}

const live = new Set<ChildProcess>();

/** Kills every CLI this module started that still runs (afterAll). */
export function killLive(): void {
  for (const c of live) c.kill('SIGKILL');
}

export function startCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 300_000): LiveCli {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  let ended = false;
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      ended = true;
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  const lines = () => logLines(stderr.slice(0, stderr.lastIndexOf('\n') + 1));
  return {
    child,
    stderr: () => stderr,
    exited,
    ended: () => ended,
    log: (pred) => lines().find(pred),
    async waitFor(what, pred, ms) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (await pred()) return;
        if (ended) throw new Error(`the CLI exited before ${what}:\n${stderr.slice(-3000)}`);
        await sleep(20);
      }
      throw new Error(`not ${what} within ${ms} ms:\n${stderr.slice(-3000)}`);
    },
  };
}

/** The state file of a run (what it has stopped, how far a restore got), or null. */
export async function readState(dirs: TempDirs): Promise<RunState | null> {
  try {
    return JSON.parse(await readFile(`${dirs.state}/state.json`, 'utf8')) as RunState;
  } catch {
    return null;
  }
}

/** Polls until both containers run; the milliseconds from `from` (bounded). */
export async function msUntilRunning(stack: MoodleStack, from: number, timeoutMs = 60_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await stack.states();
    if (s.mariadb === 'running' && s.moodle === 'running') return Date.now() - from;
    if (Date.now() > end) throw new Error(`stack not running ${timeoutMs} ms after: ${JSON.stringify(s)}`);
    await sleep(200);
  }
}

/** CLI environment for an S3 target at `endpoint` (host:port), e.g. the test server or a fault proxy. */
export function s3Env(
  stack: MoodleStack,
  dirs: TempDirs,
  bucket: string,
  endpoint: string,
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const s3 = inject('s3');
  const env = cliEnv(stack.project, dirs, {
    AWS_S3_BUCKET_NAME: bucket,
    AWS_S3_PATH: 'moodle',
    AWS_ENDPOINT: endpoint,
    AWS_ENDPOINT_PROTO: 'http',
    AWS_S3_PATH_STYLE: 'true',
    AWS_S3_CHECKSUMS: 'when_required',
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    ...extra,
  });
  delete env.BACKUP_ARCHIVE;
  return env;
}

/** host:port of the test S3 server. */
export function s3Host(): string {
  return new URL(inject('s3').endpoint).host;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same kill points on every machine. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
