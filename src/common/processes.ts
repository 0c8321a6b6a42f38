import type { ChildProcess } from 'node:child_process';
import { Transform } from 'node:stream';

/** The first 4 KiB a child process wrote to a stream (its stderr), for error messages. */
export function collect(stream: NodeJS.ReadableStream): () => string {
  let text = '';
  stream.on('data', (d: Buffer) => {
    if (text.length < 4096) text += d.toString();
  });
  return () => text.slice(0, 4096);
}

/** A child's failed exit: its signal, if one ended it, for telling causes from consequences. */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
  }
}

/**
 * Resolves with the exit code when `ok(code)` (default: 0 only), else rejects naming the tool, its status
 * and its stderr; a tool that cannot be started rejects too.
 */
export function exited(
  child: ChildProcess,
  name: string,
  stderr: () => string,
  ok: (code: number) => boolean = (code) => code === 0,
): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`${name}: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (code !== null && ok(code)) return resolve(code);
      const text = stderr().trim();
      reject(new ExitError(`${name} exited with ${code ?? signal}${text ? `: ${text}` : ''}`, signal));
    });
  });
}

/**
 * A pass-through that ends only once `done` resolves (the producing processes exited well) and fails with
 * its error otherwise: a process that dies after writing part of its output never passes for complete.
 * `onClose` runs when the stream closes for any reason (the consumer gave up): nothing may keep running.
 */
export function endsAfter(done: Promise<unknown>, onClose: () => void): Transform {
  const out = new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk);
    },
    flush(cb) {
      done.then(() => cb(), cb);
    },
  });
  done.catch((err: Error) => out.destroy(err));
  out.once('close', onClose);
  return out;
}

/** Whether a process with this pid runs (EPERM: it exists, it is only not ours to signal). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Which failure of a producer piped into a filter (tar into a compressor) is the cause, in order: the
 * filter failing by itself; the producer failing by itself other than by writing into a dead filter (broken
 * pipe / reset: the filter's death seen first from the producer's side); else whatever failed.
 */
export function firstCause(
  t: PromiseSettledResult<unknown>,
  c: PromiseSettledResult<unknown>,
  tarKilled: boolean,
  zKilled: boolean,
): Error | undefined {
  const tarFailure = t.status === 'rejected' ? (t.reason as Error) : undefined;
  const zFailure = c.status === 'rejected' ? (c.reason as Error) : undefined;
  return (
    (zFailure && !zKilled ? zFailure : undefined) ??
    (tarFailure && !tarKilled && !brokenPipe(tarFailure) ? tarFailure : undefined) ??
    zFailure ??
    tarFailure
  );
}

/** Collects a child's stderr line by line; `consume` takes lines it understands, the rest is kept (4 KiB). */
export function stderrLines(child: ChildProcess, consume: (line: string) => boolean): () => string {
  let kept = '';
  let partial = '';
  child.stderr?.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) if (!consume(line) && kept.length < 4096) kept += `${line}\n`;
  });
  child.stderr?.once('end', () => {
    if (partial && !consume(partial) && kept.length < 4096) kept += partial;
    partial = '';
  });
  return () => kept.slice(0, 4096);
}

function brokenPipe(err: Error): boolean {
  return (
    err instanceof ExitError &&
    (err.signal === 'SIGPIPE' || /Cannot write: (Broken pipe|Connection reset)/.test(err.message))
  );
}

/**
 * Kills the given processes that still run (one failed, or the consumer gave up) and remembers which it
 * killed: their failure is then a consequence, not a cause.
 */
export function stopper(children: readonly (ChildProcess | null)[]): {
  stop: () => void;
  killed: (c: ChildProcess | null) => boolean;
} {
  const killed = new Set<ChildProcess>();
  return {
    stop: () => {
      for (const c of children) {
        if (!c || c.exitCode !== null || c.signalCode !== null) continue;
        killed.add(c);
        c.kill('SIGKILL');
      }
    },
    killed: (c) => c !== null && killed.has(c),
  };
}
