import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';

/** Every container, volume and network the tests make carries this label and a name starting with TEST_PREFIX. */
export const TEST_LABEL = 'mbs.test';
export const TEST_PREFIX = 'mbst';

/**
 * The test images of this checkout: the content-addressed tags scripts/provision.sh recorded in
 * .tmp/test-images. `mbs-test/NAME:latest` is shared by every worktree on the engine and moved by each one's
 * provision; only without the record (a checkout provisioned before it existed) does a test fall back on it.
 */
function provisioned(): Record<string, string> {
  try {
    const text = readFileSync(new URL('../../.tmp/test-images', import.meta.url), 'utf8');
    return Object.fromEntries(
      text
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  } catch {
    return {};
  }
}

const recorded = provisioned();
const testImage = (name: string) => recorded[name] ?? `mbs-test/${name}:latest`;

export const IMAGES = {
  mariadb: testImage('mariadb'),
  // Overridable so a changed stand-in can be tried on a shared engine without provisioning it.
  moodle: process.env.MBS_TEST_MOODLE_IMAGE ?? testImage('moodle'),
  // Behaves like the official `postgres` image.
  postgres: testImage('postgres'),
  layouts: process.env.MBS_TEST_LAYOUTS_IMAGE ?? testImage('moodle-layouts'),
  busybox: testImage('busybox'),
  base: testImage('base'),
  node: testImage('node'),
} as const;

let client: Docker | undefined;
export function docker(): Docker {
  client ??= new Docker();
  return client;
}

/** A unique, Docker-safe name for one test's resources, e.g. `mbst-ab12cd`. */
export function uniqueName(tag = ''): string {
  const rnd = Math.random().toString(36).slice(2, 8);
  return `${TEST_PREFIX}${tag ? `-${tag}` : ''}-${rnd}`;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in a running container and collects its output (small outputs only). */
export async function execIn(
  container: string,
  cmd: string[],
  opts: { env?: string[]; user?: string; stdin?: string | Buffer; client?: Docker } = {},
): Promise<ExecResult> {
  const d = opts.client ?? docker();
  const c = d.getContainer(container);
  const exec = await c.exec({
    Cmd: cmd,
    Env: opts.env,
    User: opts.user,
    AttachStdout: true,
    AttachStderr: true,
    AttachStdin: opts.stdin !== undefined,
  });
  const stream = await exec.start({ hijack: true, stdin: opts.stdin !== undefined });
  const out = new PassThrough();
  const err = new PassThrough();
  const outChunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on('data', (d: Buffer) => outChunks.push(d));
  err.on('data', (d: Buffer) => errChunks.push(d));
  d.modem.demuxStream(stream, out, err);
  if (opts.stdin !== undefined) stream.end(opts.stdin);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  const info = await exec.inspect();
  return {
    exitCode: info.ExitCode ?? -1,
    stdout: Buffer.concat(outChunks).toString('utf8'),
    stderr: Buffer.concat(errChunks).toString('utf8'),
  };
}

/** Like execIn but throws with the command's stderr when it exits non-zero. */
export async function execOk(container: string, cmd: string[], opts: Parameters<typeof execIn>[2] = {}) {
  const r = await execIn(container, cmd, opts);
  if (r.exitCode !== 0) {
    throw new Error(`${cmd.join(' ').slice(0, 200)} exited ${r.exitCode}: ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

/**
 * Removes containers, volumes and networks made by tests: those of one compose project, those labelled with
 * one test run's id, or (no filter) everything carrying TEST_LABEL or the test name prefix.
 */
export async function sweepLeftovers(
  filter: { project?: string; runId?: string } = {},
  d: Docker = docker(),
): Promise<void> {
  const match = (name: string, labels: Record<string, string> | undefined) => {
    if (filter.project)
      return labels?.['com.docker.compose.project'] === filter.project || name.includes(filter.project);
    if (filter.runId) return labels?.[TEST_LABEL] === filter.runId;
    return labels?.[TEST_LABEL] !== undefined || name.replace(/^\//, '').startsWith(TEST_PREFIX);
  };
  const containers = await d.listContainers({ all: true });
  await Promise.all(
    containers
      .filter((c) => match(c.Names[0] ?? '', c.Labels))
      .map((c) =>
        d
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .catch(() => undefined),
      ),
  );
  const { Volumes } = await d.listVolumes();
  await Promise.all(
    (Volumes ?? [])
      .filter((v) => match(v.Name, v.Labels ?? undefined))
      .map((v) =>
        d
          .getVolume(v.Name)
          .remove({ force: true })
          .catch(() => undefined),
      ),
  );
  const networks = await d.listNetworks();
  await Promise.all(
    networks
      .filter((n) => match(n.Name, n.Labels))
      .map((n) =>
        d
          .getNetwork(n.Id)
          .remove()
          .catch(() => undefined),
      ),
  );
}
