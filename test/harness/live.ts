import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunState } from '../../src/stack/state.js';
import { CLI, type CliResult, logLines } from './cli.js';
import { CLI_NODE, CLI_NODE_FLAGS, imageEnv } from './cli-node.js';
import type { TempDirs } from './config.js';
import type { MoodleStack } from './stack.js';

export type LogLine = Record<string, unknown>;

/** A CLI run watched while it runs, so a test can kill it at a chosen moment. */
export interface LiveCli {
  child: ChildProcess;
  stderr(): string;
  /** Resolves once `pred` holds (polled every 20 ms); rejects when the run ends first or on timeout. */
  waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void>;
  /** The first log line matching `pred`. */
  log(pred: (l: LogLine) => boolean): LogLine | undefined;
  /** Resolves with the first log line matching `pred`, on the terms of `waitFor`. */
  waitForLog(what: string, pred: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine>;
  exited: Promise<CliResult>;
  ended(): boolean;
}

const live = new Set<ChildProcess>();

/** Kills every CLI this module started that still runs (afterAll). */
export function killLive(): void {
  for (const c of live) c.kill('SIGKILL');
}

export function startCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 300_000): LiveCli {
  const child = spawn(CLI_NODE, [...CLI_NODE_FLAGS, CLI, ...args], {
    env: imageEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
  const log = (pred: (l: LogLine) => boolean) => lines().find(pred);
  async function waitFor(what: string, pred: () => boolean | Promise<boolean>, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await pred()) return;
      if (ended) throw new Error(`the CLI exited before ${what}:\n${stderr.slice(-3000)}`);
      await sleep(20);
    }
    throw new Error(`not ${what} within ${ms} ms:\n${stderr.slice(-3000)}`);
  }
  return {
    child,
    stderr: () => stderr,
    exited,
    ended: () => ended,
    log,
    waitFor,
    async waitForLog(what, pred, ms) {
      await waitFor(what, () => log(pred) !== undefined, ms);
      return log(pred) as LogLine;
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
