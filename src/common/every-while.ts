import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Runs `fn` every `everyMs` (one call at a time) until `done` settles, and resolves or rejects as `done` does.
 * A failing `fn` is ignored: the caller's last, awaited call reports a real error. The pause is cut short when
 * `done` settles: a timer left running would hold the process open after its last command.
 */
export async function everyWhile<T>(done: Promise<T>, everyMs: number, fn: () => Promise<void>): Promise<T> {
  const stop = new AbortController();
  const ended = done.finally(() => stop.abort());
  ended.catch(() => undefined);
  let running: Promise<void> = Promise.resolve();
  while (!stop.signal.aborted) {
    await sleep(everyMs, undefined, { signal: stop.signal }).catch(() => undefined);
    if (stop.signal.aborted) break;
    await running;
    running = fn().catch(() => undefined);
  }
  await running;
  return ended;
}
