import type Docker from 'dockerode';
import type { CodecImpl } from '../archive/codec.js';
import { AGE_EXTENSION, type EncryptionPlan } from '../archive/encryption.js';
import type { ManifestDatabase } from '../archive/manifest.js';
import { type DumpSink, dumpDatabase } from '../database/dump.js';
import type { Logger } from '../observe/logger.js';
import type { MoodlePlan } from './moodle-plan.js';

/** Archive name of the dump: `<service>.sql`, the codec's suffix and `.age` when encrypted: mariadb.sql.zst, postgres.sql.zst. */
export function dumpFileName(service: string, codec: CodecImpl, encrypted: boolean): string {
  return `${service}.sql${codec.extension.replace(/^\.tar/, '')}${encrypted ? AGE_EXTENSION : ''}`;
}

/** Online mode's database step: dump → codec → sink, and the manifest's `database` record. */
export async function dumpStep(
  docker: Docker,
  dump: NonNullable<MoodlePlan['dump']>,
  codec: CodecImpl,
  level: number | undefined,
  encryption: EncryptionPlan | null,
  sinkFor: (file: string) => DumpSink,
  log: Logger,
  signal?: AbortSignal,
  /** Watches the raw dump (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream,
): Promise<ManifestDatabase> {
  const file = dumpFileName(dump.db.container.service, codec, encryption !== null);
  const encode = encryption ? [codec.compress(level), encryption.stage()] : [codec.compress(level)];
  const r = await dumpDatabase(docker, dump.db, encode, sinkFor(file), signal, progress);
  log.info(
    {
      step: 'dump',
      rawBytes: r.rawBytes,
      storedBytes: r.storedBytes,
      ms: r.ms,
      tables: Object.keys(r.tables).length,
    },
    `dumped ${r.databases.join(', ')} from ${dump.db.container.name}`,
  );
  return {
    kind: dump.db.engine.dumpKind,
    file,
    rawBytes: r.rawBytes,
    storedBytes: r.storedBytes,
    sha256: r.sha256,
    service: dump.db.container.service,
    container: dump.db.container.name,
    options: [...dump.db.engine.dumpOptions],
    databases: r.databases,
    ...(r.user && dump.db.engine.name === 'postgres' ? { user: r.user } : {}),
    tables: r.tables,
    volume: { name: dump.volume.short, dockerName: dump.volume.name, destination: dump.destination },
  };
}
