import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { ByteCounter, HashTap } from '../archive/tap.js';
import { SidecarError, throwFirstCause } from '../common/errors.js';
import { execStream } from '../docker/exec-stream.js';
import type { VolumeTarget } from '../stack/discover.js';
import type { DatabaseEngine } from './engine.js';
import type { FoundDatabase } from './find.js';

export interface DumpResult {
  databases: string[];
  /** The account the dump was taken as (PostgreSQL: the owner the load needs), null when not known. */
  user: string | null;
  /** Rows the dump inserts, per `database.table` (checked again on restore). */
  tables: Record<string, number>;
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  ms: number;
}

/** Where the compressed stream goes (the backup's spool file or the backend). */
export type DumpSink = (compressed: PassThrough) => Promise<void>;

/** The volume that holds the server's datadir (the mount whose destination contains it). */
export async function datadirVolume(
  docker: Docker,
  db: FoundDatabase,
  volumes: VolumeTarget[],
): Promise<{ volume: VolumeTarget; destination: string } | null> {
  const datadir = await db.engine.datadir(docker, db.container.id);
  const mount = db.container.mounts
    .filter((m) => datadir === m.destination || datadir.startsWith(`${m.destination.replace(/\/$/, '')}/`))
    .sort((a, b) => b.destination.length - a.destination.length)[0];
  const volume = mount ? volumes.find((v) => v.name === mount.volume) : undefined;
  return mount && volume ? { volume, destination: mount.destination } : null;
}

/**
 * The engine's dump tool via exec in the database container → row counter → codec → [age] → sha256 tap → sink, with
 * back-pressure end to end: the dump is never held in memory or on the database's disk.
 */
export async function dumpDatabase(
  docker: Docker,
  db: FoundDatabase,
  /** The codec, then the encryption stage when encrypting: the tap hashes what is stored. */
  encode: NodeJS.ReadWriteStream[],
  sink: DumpSink,
  signal?: AbortSignal,
  /** A pass-through that watches the raw dump bytes (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream,
): Promise<DumpResult> {
  const t0 = Date.now();
  const engine: DatabaseEngine = db.engine;
  const databases = await engine.listDatabases(docker, db.container.id);
  if (databases.length === 0) {
    throw new SidecarError(
      'DUMP_FAILED',
      `the database server in ${db.container.name} holds no application database`,
      'check that this is the Moodle database container, or use BACKUP_MODE=stop',
    );
  }
  const user = await engine.dumpUser(docker, db.container.id);
  const ex = await execStream(docker, db.container.id, engine.dumpCommand(databases));
  const raw = new ByteCounter();
  const rows = engine.rowCounter();
  const tail = new TailKeeper();
  const tap = new HashTap();
  const out = new PassThrough();
  const produce = pipeline(
    [ex.output, raw, ...(progress ? [progress] : []), rows, tail, ...encode, tap, out],
    signal ? { signal } : {},
  );
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
  if (code !== 0 || !engine.completed(tail.text)) {
    throw new SidecarError(
      'DUMP_FAILED',
      `${engine.dumpTool} in ${db.container.name} ${code !== 0 ? `exited ${code}` : 'ended without its completion line'}: ${ex.output.stderr.trim().slice(-500)}`,
      engine.name === 'postgres'
        ? 'check the database container (credentials from POSTGRES_USER/POSTGRES_PASSWORD, disk, server log)'
        : 'check the database container (credentials from MARIADB_ROOT_PASSWORD or MARIADB_USER/MARIADB_PASSWORD, disk, server log)',
    );
  }
  return {
    databases,
    user,
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
