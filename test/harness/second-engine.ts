import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import Docker from 'dockerode';

/**
 * A second Docker engine for tests that must not touch the main one (engine restarts, Swarm: test/harness/swarm.ts).
 *
 * It runs in a network namespace of its own (../shared/ENVIRONMENT.md): an engine sharing the host's namespace
 * can take the main engine's docker0 away. dockerd is started with `nsenter --net=…` rather than
 * `ip netns exec`, which remounts /sys so dockerd finds no cgroups. Inside the namespace the engine makes its
 * own docker0 and project bridges and its own iptables rules (iptables state is per namespace): user-defined
 * networks with service-name DNS work without `--bridge=none` or any iptables option. The namespace has no
 * route anywhere, which is what the network rule wants. Containers live in a cgroup parent named after the
 * engine, so a simulated power loss can find and kill every process of it, and nothing of the main engine.
 */

const run = promisify(execFile);

export interface SecondEngine {
  /** Unique per run: the netns name, the cgroup parent and the directory's base name. */
  readonly name: string;
  readonly dir: string;
  readonly socket: string;
  readonly docker: Docker;
  /** Copies images from the main engine (one `docker save` of all, so shared layers travel once); ms taken. */
  load(images: string[]): Promise<number>;
  /**
   * Power loss / host reboot: SIGKILL dockerd, containerd, the shims and every container process at once, then
   * drop what a reboot drops: the engine's mounts and its exec root and pid file (tmpfs /run on a real host).
   */
  powerLoss(): Promise<void>;
  /** Starts dockerd again on the same data root; resolves with the ms until it answered. */
  start(): Promise<number>;
  /** Removes everything: containers, the engine, mounts, cgroups, the namespace and the directory. */
  destroy(): Promise<void>;
}

/** Why this machine cannot run a second engine, or null when it can. */
export function secondEngineUnavailable(): string | null {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root (network namespaces and dockerd need root)';
  for (const tool of ['ip', 'nsenter', 'dockerd', 'docker'])
    if (!pathHas(tool)) return `\`${tool}\` is not on PATH`;
  return null;
}

function pathHas(tool: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(`${d}/${tool}`));
}

const ANSWER_TIMEOUT_MS = 60_000;
const GONE_TIMEOUT_MS = 15_000;

export async function startSecondEngine(): Promise<SecondEngine> {
  const name = `mbse-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const dir = `/tmp/${name}`;
  const socket = `${dir}/docker.sock`;
  const client = new Docker({ socketPath: socket });
  const engine: SecondEngine = {
    name,
    dir,
    socket,
    docker: client,
    load: (images) => loadImages(socket, images),
    powerLoss: async () => {
      await killAll([...(await netnsPids(name)), ...(await cgroupPids(name))]);
      await unmountUnder(dir);
      await rm(`${dir}/exec`, { recursive: true, force: true });
      await rm(`${dir}/pid`, { force: true });
    },
    start: () => startDockerd(name, dir, client),
    destroy: () => destroy(name, dir, client),
  };
  try {
    await mkdir(dir, { mode: 0o700 });
    await run('ip', ['netns', 'add', name]);
    await run('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    await engine.start();
    return engine;
  } catch (err) {
    await engine.destroy();
    throw err;
  }
}

async function startDockerd(name: string, dir: string, client: Docker): Promise<number> {
  const t0 = Date.now();
  for (const f of [`${dir}/pid`, `${dir}/exec/containerd/containerd.pid`]) await clearDeadPidFile(f);
  const log = openSync(`${dir}/dockerd.log`, 'a');
  const args = [`--net=/var/run/netns/${name}`, 'dockerd', '--data-root', `${dir}/data`, '--exec-root'];
  args.push(`${dir}/exec`, '--pidfile', `${dir}/pid`, '-H', `unix://${dir}/docker.sock`);
  args.push('--cgroup-parent', `/${name}`);
  // Detached in a session of its own: the test runner's signals and exit do not reach it; destroy() ends it.
  const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  closeSync(log);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? -1;
  });
  while (Date.now() - t0 < ANSWER_TIMEOUT_MS) {
    if (
      await client.ping().then(
        () => true,
        () => false,
      )
    )
      return Date.now() - t0;
    if (exited !== null)
      throw new Error(`dockerd exited ${exited} at start; its log ends:\n${await logTail(dir)}`);
    await sleep(100);
  }
  throw new Error(`dockerd did not answer within ${ANSWER_TIMEOUT_MS} ms:\n${await logTail(dir)}`);
}

/**
 * dockerd refuses to start while its pid file names a process that exists, and waits for the containerd its
 * containerd.pid names; a SIGKILLed one is a zombie until something reaps it (here PID 1, on its own time).
 * A dead process's pid file is removed, as a dead engine's would be (systemd) or a reboot does (tmpfs).
 */
async function clearDeadPidFile(file: string): Promise<void> {
  const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  if (!(pid > 0)) return;
  if (existsSync(`/proc/${pid}`) && !(await isZombie(pid))) return; // alive: dockerd decides
  await rm(file, { force: true });
}

async function logTail(dir: string): Promise<string> {
  const text = await readFile(`${dir}/dockerd.log`, 'utf8').catch(() => '');
  return text.split('\n').slice(-15).join('\n');
}

async function loadImages(socket: string, images: string[]): Promise<number> {
  const t0 = Date.now();
  // One pipeline in a shell: save and load are the docker CLI's, and pipefail reports either failing.
  const script = 'set -o pipefail; docker save "$@" | docker -H "unix://$SOCK" load -q >/dev/null';
  await run('bash', ['-c', script, 'load', ...images], {
    env: { ...process.env, SOCK: socket },
    timeout: 10 * 60_000,
  });
  return Date.now() - t0;
}

async function dockerdPids(dir: string): Promise<number[]> {
  const pid = Number((await readFile(`${dir}/pid`, 'utf8').catch(() => '')).trim());
  return pid > 0 ? [pid] : [];
}

/** dockerd, containerd and the shims: every process in the engine's network namespace. */
async function netnsPids(name: string): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', name]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter(Boolean).map(Number);
}

/** Every process of the engine's containers (cgroup v1 `pids` or v2 unified hierarchy, recursively). */
async function cgroupPids(name: string): Promise<number[]> {
  const out: number[] = [];
  for (const root of cgroupRoots(name)) {
    if (!existsSync(root)) continue;
    for (const d of await cgroupDirs(root)) {
      const text = await readFile(`${d}/cgroup.procs`, 'utf8').catch(() => '');
      out.push(...text.split('\n').filter(Boolean).map(Number));
    }
  }
  return out;
}

function cgroupRoots(name: string): string[] {
  return existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? [`/sys/fs/cgroup/${name}`]
    : ['pids', 'memory', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'blkio', 'systemd', 'unified']
        .map((c) => `/sys/fs/cgroup/${c}/${name}`)
        .filter((p) => existsSync(p));
}

/** A cgroup directory and its descendants, deepest first (the order rmdir needs). */
async function cgroupDirs(root: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) out.push(...(await cgroupDirs(`${root}/${e.name}`)));
  out.push(root);
  return out;
}

/** SIGKILLs all of `pids` at once and waits (bounded) until they are gone. */
async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const end = Date.now() + GONE_TIMEOUT_MS;
  for (const pid of pids) {
    // A zombie (state Z) is gone for our purpose: orphans are reaped by whoever inherits them, when it does.
    while (existsSync(`/proc/${pid}`) && !(await isZombie(pid))) {
      if (Date.now() > end) throw new Error(`process ${pid} survived SIGKILL for ${GONE_TIMEOUT_MS} ms`);
      await sleep(50);
    }
  }
}

async function isZombie(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return / Z /.test(stat.slice(stat.lastIndexOf(')')));
}

async function destroy(name: string, dir: string, client: Docker): Promise<void> {
  const errors: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    await fn().catch((err: Error) => errors.push(`${what}: ${err.message}`));
  };
  // A swarm's services would start their tasks again: leave it first (an engine in no swarm answers 503).
  await step('leave swarm', () =>
    client.swarmLeave({ force: true }).catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 503) throw err;
    }),
  );
  // Containers first, while the engine answers, so that it unmounts and unplugs them itself.
  await step('remove containers', async () => {
    const list = await client.listContainers({ all: true });
    await Promise.all(list.map((c) => client.getContainer(c.Id).remove({ force: true, v: true })));
  });
  await step('stop dockerd', async () => {
    const [pid] = await dockerdPids(dir);
    if (pid && existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGTERM');
    const end = Date.now() + GONE_TIMEOUT_MS;
    while (pid && existsSync(`/proc/${pid}`) && !(await isZombie(pid)) && Date.now() < end) await sleep(100);
  });
  // Whatever still runs in the namespace or the cgroups (a hung dockerd, containerd, shims).
  await step('kill leftovers', async () =>
    killAll([...(await netnsPids(name)), ...(await cgroupPids(name))]),
  );
  await step('unmount', () => unmountUnder(dir));
  await step('remove cgroups', async () => {
    for (const root of cgroupRoots(name)) for (const d of await cgroupDirs(root)) await rmdir(d);
  });
  await step('delete netns', async () => {
    if (existsSync(`/var/run/netns/${name}`)) await run('ip', ['netns', 'delete', name]);
  });
  await step('remove directory', () => rm(dir, { recursive: true, force: true }));
  if (errors.length) throw new Error(`second engine ${name} teardown: ${errors.join('; ')}`);
}

/** Mount points at or under `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts every mount under `dir`; lazily, so a busy one cannot block the teardown. */
async function unmountUnder(dir: string): Promise<void> {
  // A path can be mounted more than once (stacked): one umount per line, a failure checked at the end.
  for (const p of await mountsUnder(dir)) await run('umount', ['-l', p]).catch(() => undefined);
  const left = await mountsUnder(dir);
  if (left.length) throw new Error(`still mounted: ${left.join(', ')}`);
}

/** Whether the main engine's docker0 exists (a second engine done wrong removes it). */
export async function hostHasDocker0(): Promise<boolean> {
  return run('ip', ['link', 'show', 'docker0']).then(
    () => true,
    () => false,
  );
}

/** Network namespaces on the host, by name. */
export async function netnsList(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}
