import { posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError } from '../common/errors.js';
import { pgScript } from '../database/pg-client.js';
import { pgCheckAll } from '../database/postgres.js';
import { execCapture } from '../docker/exec.js';
import { HELPER_LABEL, helperOwner } from '../docker/labels.js';
import { requireLocalImage } from '../docker/local-image.js';
import { demuxLogs } from '../volume/restore-volume.js';
import { datadirService } from './mariadb.js';
import type { VerifyOptions } from './types.js';

/**
 * Run as the datadir's owner in the snapshot's own image: read the bootstrap superuser's name (OID 10) in
 * single-user mode (no password needed, and it replays WAL as a start would), then run the server on a
 * socket in /tmp with a trust-only hba file of its own, no TCP. The drill never learns a password.
 */
const SERVE = pgScript(`d=$1
echo 'SELECT rolname FROM pg_roles WHERE oid = 10' | postgres --single -D "$d" template1 >/tmp/mbs-single.out 2>&1
role=$(sed -n 's/.*rolname = "\\(.*\\)".*/\\1/p' /tmp/mbs-single.out | head -n 1)
[ -n "$role" ] || { tail -n 15 /tmp/mbs-single.out >&2; exit 3; }
printf %s "$role" >/tmp/mbs-role
printf 'local all all trust\\n' >/tmp/mbs-hba.conf
exec postgres -D "$d" -c hba_file=/tmp/mbs-hba.conf -c listen_addresses= -c unix_socket_directories=/tmp`);

/**
 * `verify --deep` for a volume holding a PostgreSQL datadir: the snapshot's image runs the server on the
 * extracted copy (no network), and pg_amcheck checks every table's heap and indexes in every database.
 */
export async function checkPostgres(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  pg: NonNullable<TarStats['postgresDatadir']>,
  scratch: string,
  name: string,
): Promise<string> {
  const { svc, at } = datadirService(m, v);
  await requireLocalImage(o.docker, svc, `volume ${v.name}: `);
  const c = await o.docker.createContainer({
    name,
    Image: svc.imageId,
    Entrypoint: ['sh', '-c', SERVE, 'drill', posix.join(at.destination, pg.dir)],
    Cmd: [],
    User: `${pg.uid}:${pg.gid}`,
    Labels: { [HELPER_LABEL]: helperOwner() },
    NetworkDisabled: true,
    HostConfig: { NetworkMode: 'none', Binds: [`${scratch}:${at.destination}:nocopy`] },
  });
  try {
    await c.start();
    await waitForSocket(o, c, v);
    const connect = '-h /tmp -U "$(cat /tmp/mbs-role)"';
    const r = await pgCheckAll(o.docker, c.id, o.dbCheckTimeoutMs ?? 30 * 60_000, connect);
    if (r.tables === 0)
      throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: pg_amcheck found no tables`);
    if (r.bad.length > 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: pg_amcheck found corruption: ${r.bad.slice(0, 5).join('; ')}`,
      );
    }
    return `pg_amcheck: ${r.tables} tables OK (${svc.image})`;
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

async function waitForSocket(o: VerifyOptions, c: Docker.Container, v: ManifestVolume): Promise<void> {
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
        `volume ${v.name}: the PostgreSQL server exited (${state.ExitCode}) before answering: ${logs.trim().slice(-600)}`,
      );
    }
    const r = await execCapture(
      o.docker,
      c.id,
      ['sh', '-c', pgScript('exec pg_isready -q -h /tmp')],
      10_000,
    ).catch((err: Error) => ({ exitCode: -1, stdout: '', stderr: err.message }));
    if (r.exitCode === 0) return;
    last = (r.stderr || r.stdout).trim();
    await sleep(300);
  }
  throw new SidecarError(
    'INTEGRITY_FAILED',
    `volume ${v.name}: the PostgreSQL server did not answer within ${timeout / 1000} s: ${last.slice(-300)}`,
  );
}
