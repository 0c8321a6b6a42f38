import { posix } from 'node:path';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError } from '../common/errors.js';
import { pgScript } from '../database/pg-client.js';
import { pgCheckAll } from '../database/postgres.js';
import { type ScratchServer, withScratchServer } from './scratch-server.js';
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

function postgresServer(pg: NonNullable<TarStats['postgresDatadir']>): ScratchServer {
  return {
    engine: 'PostgreSQL',
    container: (_info, mountedAt) => ({
      Entrypoint: ['sh', '-c', SERVE, 'drill', posix.join(mountedAt, pg.dir)],
      Cmd: [],
      User: `${pg.uid}:${pg.gid}`,
    }),
    ready: ['sh', '-c', pgScript('exec pg_isready -q -h /tmp')],
    answer: 'answer',
    pollMs: 300,
  };
}

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
  return withScratchServer(o, m, v, scratch, name, postgresServer(pg), async (container, image) => {
    const connect = '-h /tmp -U "$(cat /tmp/mbs-role)"';
    const r = await pgCheckAll(o.docker, container, o.dbCheckTimeoutMs ?? 30 * 60_000, connect);
    if (r.tables === 0)
      throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: pg_amcheck found no tables`);
    if (r.bad.length > 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: pg_amcheck found corruption: ${r.bad.slice(0, 5).join('; ')}`,
      );
    }
    return `pg_amcheck: ${r.tables} tables OK (${image})`;
  });
}
