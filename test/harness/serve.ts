import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI } from './cli.js';
import { CLI_NODE, CLI_NODE_FLAGS, imageEnv } from './cli-node.js';
import { freePort } from './s3-server.js';

/** Polls `fn` until it returns a value, at most `timeoutMs`; the error names what was awaited. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 500,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface ServeProcess {
  child: ChildProcess;
  /** Everything it logged so far (pino JSON lines on stderr). */
  log(): string;
  /** SIGTERM, then the exit code (null: it had to be killed after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** `moodle-backup serve` from dist/, as the image runs it. */
export function startServe(env: NodeJS.ProcessEnv): ServeProcess {
  const child = spawn(CLI_NODE, [...CLI_NODE_FLAGS, CLI, 'serve'], {
    env: imageEnv(env),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, 'exit');
  return {
    child,
    log: () => stderr,
    async stop(timeoutMs = 60_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const r = await Promise.race([exited, sleep(timeoutMs).then(() => null)]);
      if (r === null) {
        child.kill('SIGKILL');
        await exited;
        return null;
      }
      return (r as [number | null])[0];
    },
  };
}

/** `serve` with its health server on a free 127.0.0.1 port, returned once it has planned its jobs. */
export async function startServeReady(env: NodeJS.ProcessEnv): Promise<ServeProcess & { port: number }> {
  const port = await freePort();
  const serve = startServe({ ...env, BACKUP_HEALTH_PORT: String(port), BACKUP_HEALTH_HOST: '127.0.0.1' });
  await until(
    'serve to plan its jobs',
    async () => (serve.log().includes('scheduled backups on') ? true : undefined),
    30_000,
  );
  return { ...serve, port };
}
