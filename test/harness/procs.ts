import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** A child process of `parent`, as Linux's /proc shows it. */
export interface Proc {
  pid: number;
  /** argv, split on NUL. */
  argv: string[];
}

/** The direct children of a process (every thread's `children` list in /proc). */
export async function childrenOf(parent: number): Promise<Proc[]> {
  const pids = new Set<number>();
  const tasks = await readdir(`/proc/${parent}/task`).catch(() => [] as string[]);
  for (const t of tasks) {
    const text = await readFile(`/proc/${parent}/task/${t}/children`, 'utf8').catch(() => '');
    for (const p of text.split(' ').filter(Boolean)) pids.add(Number(p));
  }
  const out: Proc[] = [];
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline) out.push({ pid, argv: cmdline.split('\0').filter(Boolean) });
  }
  return out;
}

/** Polls (every 5 ms, at most `timeoutMs`) for a child of `parent` matching `pred`. */
export async function waitForChild(
  parent: number,
  what: string,
  pred: (p: Proc) => boolean,
  timeoutMs = 60_000,
): Promise<Proc> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const found = (await childrenOf(parent)).find(pred);
    if (found) return found;
    await sleep(5);
  }
  throw new Error(`no child process ${what} of ${parent} within ${timeoutMs} ms`);
}

/** Bytes a process has written so far (/proc/<pid>/io wchar; 0 once it is gone). */
export async function bytesWritten(pid: number): Promise<number> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8').catch(() => '');
  return Number(/^wchar: (\d+)$/m.exec(io)?.[1] ?? 0);
}
