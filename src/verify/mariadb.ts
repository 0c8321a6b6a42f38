import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { parseCheck } from '../database/mariadb-check.js';
import { execCapture } from '../docker/exec.js';
import { HELPER_LABEL, helperOwner } from '../docker/labels.js';
import { requireLocalImage } from '../docker/local-image.js';
import { demuxLogs } from '../volume/restore-volume.js';
import type { VerifyOptions } from './types.js';

/** `sh -c` prelude that runs the first tool present of two (mariadb-* names, else the older mysql* ones). */
const EITHER =
  'a=$1; b=$2; shift 2; if command -v "$a" >/dev/null 2>&1; then exec "$a" "$@"; fi; exec "$b" "$@"';

/**
 * Starts the snapshot's own MariaDB image (as container `name`) on the scratch volume, without network and with
 * `--skip-grant-tables` (the drill cannot know the root password), and requires every table to check OK.
 */
export async function checkDatabase(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  scratch: string,
  name: string,
): Promise<string> {
  const { svc, at } = datadirService(m, v);
  const info = await requireLocalImage(o.docker, svc, `volume ${v.name}: `);
  const c = await o.docker.createContainer({
    name,
    Image: svc.imageId,
    Cmd: [...(info.Config?.Cmd ?? []), '--skip-grant-tables'],
    // Bitnami's entrypoint refuses to start without a root password unless told an empty one is fine.
    Env: ['ALLOW_EMPTY_PASSWORD=yes'],
    Labels: { [HELPER_LABEL]: helperOwner() },
    NetworkDisabled: true,
    HostConfig: {
      NetworkMode: 'none',
      // nocopy: Docker must not copy the image's files into the scratch volume.
      Binds: [`${scratch}:${at.destination}:nocopy`],
    },
  });
  try {
    await c.start();
    await waitForPing(o, c, v);
    const tables = await checkTables(o, c.id, v);
    return `mariadb-check: ${tables} tables OK (${svc.image})`;
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/** The service that mounted the datadir volume when the snapshot was taken, and where. */
export function datadirService(m: Manifest, v: ManifestVolume) {
  const mount = v.mountedAt
    .map((at) => ({ at, svc: m.stack.services.find((s) => s.service === at.service) }))
    .find((x) => x.svc);
  if (!mount?.svc) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name} holds a database datadir, but the manifest names no service that mounted it`,
    );
  }
  return { svc: mount.svc, at: mount.at };
}

/** Runs mariadb-check on every table; returns how many were checked, or throws naming the bad ones. */
async function checkTables(o: VerifyOptions, container: string, v: ManifestVolume): Promise<number> {
  const r = await execCapture(
    o.docker,
    container,
    ['sh', '-c', EITHER, 'drill', 'mariadb-check', 'mysqlcheck', '-uroot', '--all-databases'],
    o.dbCheckTimeoutMs ?? 30 * 60_000,
  );
  if (r.exitCode !== 0) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name}: mariadb-check exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-400)}`,
    );
  }
  const { tables, bad } = parseCheck(r.stdout);
  if (tables === 0) {
    throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: mariadb-check listed no tables`);
  }
  if (bad.length > 0) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name}: ${bad.length} of ${tables} tables failed mariadb-check: ${bad.slice(0, 5).join('; ')}`,
    );
  }
  return tables;
}

async function waitForPing(o: VerifyOptions, c: Docker.Container, v: ManifestVolume): Promise<void> {
  const timeout = o.dbStartTimeoutMs ?? 180_000;
  const end = Date.now() + timeout;
  let last = '';
  while (Date.now() < end) {
    o.signal?.throwIfAborted();
    const state = (await c.inspect()).State;
    if (!state.Running) {
      const logs = demuxLogs((await c.logs({ stdout: true, stderr: true, tail: 15 })) as unknown as Buffer);
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: the MariaDB server exited (${state.ExitCode}) before answering: ${logs.trim().slice(-600)}`,
      );
    }
    const r = await execCapture(
      o.docker,
      c.id,
      ['sh', '-c', EITHER, 'drill', 'mariadb-admin', 'mysqladmin', '-uroot', 'ping'],
      10_000,
    ).catch((err: Error) => ({ exitCode: -1, stdout: '', stderr: err.message }));
    if (r.exitCode === 0) return;
    last = (r.stderr || r.stdout).trim();
    await sleep(500);
  }
  throw new SidecarError(
    'INTEGRITY_FAILED',
    `volume ${v.name}: the MariaDB server did not answer ping within ${timeout / 1000} s: ${last.slice(-300)}`,
  );
}
