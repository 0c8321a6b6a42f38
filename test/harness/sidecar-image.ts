import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { composeLabels } from './compose.js';
import { docker, execIn, IMAGES } from './docker.js';

/**
 * The sidecar image as users run it, and the S3 server a compose stack would run beside it: shared by the
 * e2e tests that start the image in a compose-labelled project.
 */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// IMAGE (as for scripts/build-image.sh) lets parallel checkouts build and test their own tag.
export const SIDECAR_IMAGE = process.env.IMAGE ?? 'moodle-backup-sidecar:dev';

/** scripts/build-image.sh (cached by a hash of its inputs): its exit code, output and duration. */
export function buildSidecarImage(): Promise<{ code: number | null; output: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['scripts/build-image.sh'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 14 * 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - t0 });
    });
  });
}

/** The last lines of a container's log (non-TTY: Docker's 8-byte frame headers are stripped). */
export async function containerLogs(name: string, tail = 150): Promise<string> {
  const buf = await docker().getContainer(name).logs({ stdout: true, stderr: true, tail, follow: false });
  const out: Buffer[] = [];
  for (let i = 0; i + 8 <= buf.length; ) {
    const len = buf.readUInt32BE(i + 4);
    out.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  return Buffer.concat(out).toString('utf8');
}

/** The engine's socket, to bind into the sidecar (docker-modem's socketPath may be a function: the default). */
export function dockerSocket(): string {
  const modemSocket = (docker().modem as { socketPath?: unknown }).socketPath;
  return typeof modemSocket === 'string' ? modemSocket : '/var/run/docker.sock';
}

export interface S3Service {
  /** Container name; removed with the project (it carries the project's compose labels). */
  name: string;
  /** host:port as the other services of the project reach it, e.g. `minio:9000`. */
  endpoint: string;
}

/**
 * s3rver (from the repo's node_modules, on the test node image) as a service of `project`, reachable by
 * `alias` on the project network. `--no-vhost-buckets` makes it answer as MinIO does by default: buckets in
 * the path (it would otherwise take the Host name for a bucket name); `--openssl-legacy-provider` for its
 * paged listings (ENVIRONMENT.md).
 */
export async function startS3Service(
  project: string,
  network: string,
  opts: { alias: string; port: number; bucket: string },
): Promise<S3Service> {
  const name = `${project}-${opts.alias}-1`;
  const c = await docker().createContainer({
    name,
    Image: IMAGES.node,
    WorkingDir: '/srv/s3rver',
    Cmd: [
      'node',
      '--openssl-legacy-provider',
      'node_modules/s3rver/bin/s3rver.js',
      '-d',
      '/data',
      '-a',
      '0.0.0.0',
      '-p',
      String(opts.port),
      '--no-vhost-buckets',
      '--configure-bucket',
      opts.bucket,
    ],
    Labels: composeLabels(project, opts.alias),
    HostConfig: {
      Binds: [`${ROOT}node_modules:/srv/s3rver/node_modules:ro`],
      NetworkMode: network,
    },
    NetworkingConfig: { EndpointsConfig: { [network]: { Aliases: [opts.alias] } } },
  });
  await c.start();
  const probe = `fetch('http://127.0.0.1:${opts.port}/${opts.bucket}').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`;
  for (let i = 0; ; i++) {
    if ((await execIn(name, ['node', '-e', probe])).exitCode === 0) break;
    if (i >= 60) throw new Error(`s3rver did not answer:\n${await containerLogs(name)}`);
    await sleep(500);
  }
  return { name, endpoint: `${opts.alias}:${opts.port}` };
}
