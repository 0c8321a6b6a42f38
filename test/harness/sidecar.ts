import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { inject } from 'vitest';
import { firstTarFile } from '../../src/archive/first-file.js';
import type { RunState } from '../../src/stack/state.js';
import { composeLabels } from './compose.js';
import { docker, type ExecResult, execIn, TEST_LABEL } from './docker.js';
import { dockerSocket, SIDECAR_IMAGE } from './sidecar-image.js';
import { createMoodleStack, type MoodleStack, type SeedOptions, VOLUME_NAMES } from './stack.js';

const STATE_DIR = '/var/lib/moodle-backup';

/**
 * A container's log from `sinceMs` on, exactly (each line's own timestamp, unlike `since`, which counts whole
 * seconds); sidecar-image.ts containerLogs reads the last lines.
 */
export async function logsSince(name: string, opts: { tail?: number; sinceMs?: number } = {}) {
  const buf = await docker()
    .getContainer(name)
    .logs({
      stdout: true,
      stderr: true,
      follow: false,
      timestamps: true,
      ...(opts.tail ? { tail: opts.tail } : {}),
    });
  const out: string[] = [];
  for (let i = 0; i + 8 <= buf.length; ) {
    const len = buf.readUInt32BE(i + 4);
    out.push(buf.subarray(i + 8, i + 8 + len).toString('utf8'));
    i += 8 + len;
  }
  // Each line starts with its RFC 3339 time (nanoseconds): the time filter is exact, unlike `since`.
  return out
    .join('')
    .split('\n')
    .filter(
      (l) => l && (opts.sinceMs === undefined || Date.parse(l.slice(0, l.indexOf(' '))) >= opts.sinceMs),
    )
    .map((l) => l.slice(l.indexOf(' ') + 1))
    .join('\n');
}

/** One file of a container, running or stopped (Docker's archive API, of `d`'s engine); null when it does not exist. */
export async function readContainerFile(
  container: string,
  path: string,
  d: Docker = docker(),
): Promise<string | null> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await d.getContainer(container).getArchive({ path });
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
  return (await firstTarFile(stream, 64 * 1024 * 1024))?.toString('utf8') ?? '';
}

/** The Moodle test stack with the sidecar image running `serve` as its `backup` service (compose.example.yml). */
export interface SidecarStack {
  stack: MoodleStack;
  /** The sidecar's container name. */
  sidecar: string;
  exec(args: string[]): Promise<ExecResult>;
  /** `docker exec -d <sidecar> …`: returns once started. */
  execDetached(args: string[]): Promise<void>;
  /** The run's state file as the sidecar sees it (also while the container is stopped), or null. */
  state(): Promise<RunState | null>;
  /** 127.0.0.1 port of /healthz; it changes on every start of the container. */
  healthPort(): Promise<number>;
  remove(): Promise<void>;
}

/**
 * `docker compose up` of compose.example.yml, made through the harness: the stack's volumes mounted at
 * /backup/<name>, the Docker socket, a state volume, the local target on a volume, restart: unless-stopped,
 * the health port published on 127.0.0.1 only. Nothing is scheduled: only the test's commands run.
 */
export async function createSidecarStack(
  opts: {
    seed?: SeedOptions;
    env?: string[];
    /** Services the sidecar reaches (an S3 server), started on the stack's network before it: more env. */
    before?: (stack: MoodleStack) => Promise<string[]>;
  } = {},
) {
  const stack = await createMoodleStack({ seed: opts.seed ?? {} });
  try {
    const env = [...(opts.env ?? []), ...((await opts.before?.(stack)) ?? [])];
    const d = docker();
    const { project, network, volumes } = stack;
    const own: string[] = [];
    for (const v of ['backup_state', 'archive']) {
      const name = `${project}_${v}`;
      const labels = { 'com.docker.compose.project': project, 'com.docker.compose.volume': v };
      await d.createVolume({ Name: name, Labels: { ...labels, [TEST_LABEL]: inject('runId') } });
      own.push(name);
    }
    const sidecar = `${project}-backup-1`;
    const socket = dockerSocket();
    await d.createContainer({
      name: sidecar,
      Image: SIDECAR_IMAGE,
      Env: ['TZ=UTC', 'LOG_LEVEL=info', ...env],
      Labels: { ...composeLabels(project, 'backup'), 'moodle-backup.stop': 'false' },
      ExposedPorts: { '8080/tcp': {} },
      HostConfig: {
        Binds: [
          `${socket}:/var/run/docker.sock`,
          `${own[0]}:${STATE_DIR}`,
          `${own[1]}:/archive`,
          ...VOLUME_NAMES.map((v) => `${volumes[v]}:/backup/${v}`),
        ],
        NetworkMode: network,
        PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
        RestartPolicy: { Name: 'unless-stopped' },
      },
      NetworkingConfig: { EndpointsConfig: { [network]: { Aliases: ['backup'] } } },
    });
    const s: SidecarStack = {
      stack,
      sidecar,
      exec: (args) => execIn(sidecar, args),
      async execDetached(args) {
        const e = await d.getContainer(sidecar).exec({ Cmd: args, AttachStdout: false, AttachStderr: false });
        await e.start({ Detach: true });
      },
      async state() {
        const text = await readContainerFile(sidecar, `${STATE_DIR}/state.json`);
        return text ? (JSON.parse(text) as RunState) : null;
      },
      async healthPort() {
        const info = await d.getContainer(sidecar).inspect();
        return Number(info.NetworkSettings.Ports['8080/tcp']?.[0]?.HostPort);
      },
      remove: () => stack.remove(),
    };
    await serveReady(s, await startSidecar(s));
    return s;
  } catch (err) {
    await stack.remove();
    throw err;
  }
}

/** `docker start` (a container the engine restarted by itself already runs: 304); returns when it was asked. */
export async function startSidecar(s: SidecarStack): Promise<number> {
  const t0 = Date.now();
  await docker()
    .getContainer(s.sidecar)
    .start()
    .catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 304) throw err;
    });
  return t0;
}

/** `docker restart` (SIGTERM: serve stops cleanly) and `serve` listening again: a fresh process tree. */
export async function restartSidecar(s: SidecarStack): Promise<void> {
  const t0 = Date.now();
  await docker().getContainer(s.sidecar).restart({ t: 60 });
  await serveReady(s, t0);
}

/** Waits until the `serve` started at `since` listens (it has done its start-up recovery by then). */
export async function serveReady(s: SidecarStack, since: number, timeoutMs = 60_000): Promise<void> {
  while (!(await logsSince(s.sidecar, { sinceMs: since - 1_000 })).includes('health and metrics on')) {
    const st = (await docker().getContainer(s.sidecar).inspect()).State;
    if (Date.now() - since > timeoutMs || (!st.Running && !st.Restarting))
      throw new Error(
        `serve did not come up (running: ${st.Running}, exit ${st.ExitCode}):\n${await logsSince(s.sidecar, { tail: 60 })}`,
      );
    await sleep(200);
  }
}
