import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import type { SecondEngine } from './second-engine.js';

/**
 * Docker Swarm on a second engine (test/harness/second-engine.ts): a one-node swarm advertised on 127.0.0.1
 * inside the engine's network namespace, stacks deployed with the docker CLI as users deploy them.
 */

const run = promisify(execFile);

/** The docker CLI against the engine's socket; rejects with its output on a non-zero exit. */
export async function engineCli(engine: SecondEngine, args: string[]): Promise<string> {
  try {
    const { stdout } = await run('docker', ['-H', `unix://${engine.socket}`, ...args], { timeout: 120_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`docker ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

/** `docker swarm init` on 127.0.0.1 (inside the namespace: nothing else can reach it). */
export async function initSwarm(engine: SecondEngine): Promise<void> {
  await engineCli(engine, ['swarm', 'init', '--advertise-addr', '127.0.0.1']);
}

/** `docker stack deploy` of `yaml`; images are local (no registry), so nothing is resolved or pulled. */
export async function deployStack(engine: SecondEngine, stack: string, yaml: string): Promise<void> {
  const file = `${engine.dir}/${stack}.yml`;
  await writeFile(file, yaml);
  await engineCli(engine, ['stack', 'deploy', '--resolve-image', 'never', '-c', file, stack]);
}

/** `docker stack rm`, then waits (bounded) until no container of the stack is left on the engine. */
export async function removeStack(engine: SecondEngine, stack: string): Promise<void> {
  await engineCli(engine, ['stack', 'rm', stack]);
  await until(
    async () =>
      (
        await engine.docker.listContainers({
          all: true,
          filters: { label: [`com.docker.stack.namespace=${stack}`] },
        })
      ).length === 0,
    60_000,
    `the containers of stack ${stack} to be removed`,
  );
}

/** A service's replica count in its spec (null: global). */
export async function specReplicas(d: Docker, service: string): Promise<number | null> {
  const s = (await d.getService(service).inspect()) as Docker.Service;
  return s.Spec?.Mode?.Replicated ? (s.Spec.Mode.Replicated.Replicas ?? 1) : null;
}

/** Tasks of a service that swarm wants running and that run. */
export async function runningTasks(d: Docker, service: string): Promise<number> {
  const tasks = (await d.listTasks({ filters: { service: [service], 'desired-state': ['running'] } })) as {
    Status?: { State?: string };
  }[];
  return tasks.filter((t) => t.Status?.State === 'running').length;
}

/** Replicas in the spec and tasks running, per service, for assertions: `{ moodle: '2/2', ... }`. */
export async function serviceCounts(
  d: Docker,
  stack: string,
  services: string[],
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of services) {
    const name = `${stack}_${s}`;
    out[s] = `${await runningTasks(d, name)}/${await specReplicas(d, name)}`;
  }
  return out;
}

/** Waits (bounded) until every service has its replica count of running tasks; ms taken. */
export async function waitServicesRunning(
  d: Docker,
  stack: string,
  want: Record<string, number>,
  timeoutMs: number,
  trace?: string[],
): Promise<number> {
  const t0 = Date.now();
  const expected = Object.fromEntries(Object.entries(want).map(([s, n]) => [s, `${n}/${n}`]));
  let last: Record<string, string> = {};
  await until(
    async () => {
      const seen = await serviceCounts(d, stack, Object.keys(want)).catch((e: Error) => ({
        error: e.message,
      }));
      if (trace && JSON.stringify(seen) !== JSON.stringify(last))
        trace.push(`${new Date().toISOString().slice(11, 23)} ${JSON.stringify(seen)}`);
      last = seen;
      return JSON.stringify(last) === JSON.stringify(expected);
    },
    timeoutMs,
    () => `services ${JSON.stringify(expected)} (last seen ${JSON.stringify(last)})`,
  );
  return Date.now() - t0;
}

/** The running task container of a service on this engine (the one to `docker exec` into). */
export async function taskContainer(d: Docker, service: string, timeoutMs = 60_000): Promise<string> {
  let id = '';
  await until(
    async () => {
      const list = await d.listContainers({
        filters: { label: [`com.docker.swarm.service.name=${service}`], status: ['running'] },
      });
      id = list[0]?.Id ?? '';
      return id !== '';
    },
    timeoutMs,
    `a running task of ${service}`,
  );
  return id;
}

/** Polls `ok` every 100 ms until it holds; throws after `timeoutMs` naming what was awaited. */
export async function until(
  ok: () => Promise<boolean>,
  timeoutMs: number,
  what: string | (() => string),
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`,
      );
    await sleep(100);
  }
}
