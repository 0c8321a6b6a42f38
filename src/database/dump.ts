import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { ByteCounter, HashTap } from '../archive/tap.js';
import { SidecarError, throwFirstCause } from '../common/errors.js';
import { execStream } from '../docker/exec-stream.js';
import type { DatabaseServer } from '../moodle/site.js';
import type { VolumeTarget } from '../stack/discover.js';
import { clientScript, listDatabases, querySql } from './client.js';
import { SqlRowCounter } from './sql-rows.js';

/**
 * One consistent snapshot of every InnoDB table (a single REPEATABLE READ transaction, no locks held),
 * plus stored routines, events and triggers; binary columns as hex so the dump is plain text.
 */
export const DUMP_OPTIONS = [
  '--single-transaction',
  '--routines',
  '--events',
  '--triggers',
  '--hex-blob',
  '--default-character-set=utf8mb4',
] as const;

export interface DumpResult {
  databases: string[];
  /** Rows the dump inserts, per `database.table` (checked again on restore). */
  tables: Record<string, number>;
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  ms: number;
}

/** Where the compressed stream goes (the backup's spool file or the backend). */
export type DumpSink = (compressed: PassThrough) => Promise<void>;

/** The volume that holds the server's datadir (the mount whose destination contains @@datadir). */
export async function datadirVolume(
  docker: Docker,
  db: DatabaseServer,
  volumes: VolumeTarget[],
): Promise<{ volume: VolumeTarget; destination: string } | null> {
  const datadir = (await querySql(docker, db.container.id, 'SELECT @@datadir')).trim();
  const mount = db.container.mounts
    .filter((m) => datadir === m.destination || datadir.startsWith(`${m.destination.replace(/\/$/, '')}/`))
    .sort((a, b) => b.destination.length - a.destination.length)[0];
  const volume = mount ? volumes.find((v) => v.name === mount.volume) : undefined;
  return mount && volume ? { volume, destination: mount.destination } : null;
}

/**
 * mariadb-dump via exec in the database container → row counter → codec → [age] → sha256 tap → sink, with
 * back-pressure end to end: the dump is never held in memory or on the database's disk.
 */
export async function dumpDatabase(
  docker: Docker,
  db: DatabaseServer,
  /** The codec, then the encryption stage when encrypting: the tap hashes what is stored. */
  encode: NodeJS.ReadWriteStream[],
  sink: DumpSink,
  signal?: AbortSignal,
): Promise<DumpResult> {
  const t0 = Date.now();
  const databases = await listDatabases(docker, db.container.id);
  if (databases.length === 0) {
    throw new SidecarError(
      'DUMP_FAILED',
      `the database server in ${db.container.name} holds no application database`,
      'check that this is the Moodle database container, or use BACKUP_MODE=stop',
    );
  }
  const ex = await execStream(docker, db.container.id, [
    'sh',
    '-c',
    clientScript(
      '[ -n "$dump" ] || { echo "no mariadb-dump/mysqldump in this container" >&2; exit 127; }\n' +
        `exec "$dump" -u"$user" ${DUMP_OPTIONS.join(' ')} --databases "$@"`,
    ),
    'dump',
    ...databases,
  ]);
  const raw = new ByteCounter();
  const rows = new SqlRowCounter();
  const tail = new TailKeeper();
  const tap = new HashTap();
  const out = new PassThrough();
  const produce = pipeline([ex.output, raw, rows, tail, ...encode, tap, out], signal ? { signal } : {});
  const consume = sink(out).catch((err: unknown) => {
    out.destroy(err as Error);
    throw err;
  });
  try {
    throwFirstCause(await Promise.allSettled([produce, consume]));
  } finally {
    ex.socket.destroy();
  }
  const code = await exitCode(ex.exitCode);
  // mariadb-dump's last line; a dump cut short by a dying server could otherwise exit 0 on some versions.
  if (code !== 0 || !/-- Dump completed/.test(tail.text)) {
    throw new SidecarError(
      'DUMP_FAILED',
      `mariadb-dump in ${db.container.name} ${code !== 0 ? `exited ${code}` : 'ended without its completion line'}: ${ex.output.stderr.trim().slice(-500)}`,
      'check the database container (credentials from MARIADB_ROOT_PASSWORD or MARIADB_USER/MARIADB_PASSWORD, disk, server log)',
    );
  }
  return {
    databases,
    tables: rows.tables,
    rawBytes: raw.bytes,
    storedBytes: tap.bytes,
    sha256: tap.digest(),
    ms: Date.now() - t0,
  };
}

/** Docker reports the exit code a moment after the output ends. */
async function exitCode(get: () => Promise<number>): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const code = await get();
    if (code !== -1) return code;
    await sleep(100);
  }
  return -1;
}

/** Keeps the last few hundred bytes that passed. */
class TailKeeper extends Transform {
  private last = Buffer.alloc(0);
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.last = Buffer.concat([this.last.subarray(-512), chunk.subarray(-512)]).subarray(-512);
    cb(null, chunk);
  }
  get text(): string {
    return this.last.toString('utf8');
  }
}
