import { z } from 'zod';
import { SidecarError } from '../common/errors.js';
import { encryptionSchema } from './encryption.js';

/** Format identifier written into every manifest; bump on incompatible changes (docs/format.md). */
export const FORMAT = 'moodle-backup-sidecar/1';
/**
 * Snapshots whose volumes keep blobs in the store (volume.blobs): a tool that knows only FORMAT must refuse
 * them rather than restore the tarball alone, so they get their own format identifier.
 */
export const FORMAT_STORE = 'moodle-backup-sidecar/2';
/**
 * Snapshots with a blob list that names a shared base (volume.blobs.base): a tool that knows only
 * FORMAT_STORE would read the list's first line as damage, so it must refuse them instead.
 */
export const FORMAT_SHARED_LISTS = 'moodle-backup-sidecar/3';
export const MANIFEST_NAME = 'manifest.json';

const volumeSchema = z.object({
  /** Short (compose) name, e.g. moodledata_data. */
  name: z.string().min(1),
  /** Docker's volume name at backup time, e.g. moodle_moodledata_data. */
  dockerName: z.string().min(1),
  /** Object key relative to the snapshot directory. */
  file: z.string().min(1),
  /** Uncompressed tar bytes. */
  rawBytes: z.number().int().nonnegative(),
  /** Bytes of the stored object. */
  storedBytes: z.number().int().nonnegative(),
  /** sha256 of the stored object, hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Where the volume was mounted, by service. */
  mountedAt: z.array(z.object({ service: z.string(), destination: z.string() })),
  /** Exclusion rules applied while reading (archive/tar-exclude.ts syntax). */
  excluded: z.array(z.string()).default([]),
  /** Tar entries and file bytes those rules left out. */
  excludedEntries: z.number().int().nonnegative().optional(),
  excludedBytes: z.number().int().nonnegative().optional(),
  /**
   * sha256 over the volume's metadata listing at the read (path, type, size, mode, owner, mtime, ctime,
   * inode of every entry) and how the archive was made (excludes, codec, level, recipients): a later backup
   * whose fingerprint is equal reuses this archive (backup/reuse.ts). Absent: never reused.
   */
  fingerprint: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  /** The snapshot whose archive this one is a copy of (nothing in the volume had changed since). */
  reusedFrom: z.string().min(1).optional(),
  /** The volume's Moodle blobs (filedir/, trashdir/), kept in the store instead of the tarball. */
  blobs: z
    .object({
      /** The blob list (store/blob-list.ts), relative to the snapshot directory. */
      file: z.string().min(1),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      storedBytes: z.number().int().nonnegative(),
      /** Blobs (files) in the snapshot and their bytes. */
      count: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
      /** Of those, stored by this run (new to the store), and the bytes of packs it wrote. */
      added: z.number().int().nonnegative(),
      addedBytes: z.number().int().nonnegative(),
      packBytes: z.number().int().nonnegative(),
      /** Live files whose content is not their name (corruption on the site): kept under the real SHA-1. */
      mismatches: z
        .array(z.object({ path: z.string(), claimed: z.string(), actual: z.string() }))
        .default([]),
      /**
       * Phase times: blobs stored before the stack stopped, and listed/stored inside the window (online mode:
       * at the first look and at the second).
       */
      beforeMs: z.number().nonnegative(),
      insideMs: z.number().nonnegative(),
      /**
       * The shared list (store/lists/) that `file` is the difference from: its sha256 (its key), stored size
       * and blob lines; `added`: this run wrote it. Absent: `file` is the whole list (format 2).
       */
      base: z
        .object({
          sha256: z.string().regex(/^[0-9a-f]{64}$/),
          storedBytes: z.number().int().nonnegative(),
          count: z.number().int().nonnegative(),
          added: z.boolean(),
        })
        .optional(),
    })
    .optional(),
});

/** Online mode: the database as a dump (mariadb-dump, or pg_dump in plain format) instead of its datadir volume. */
const databaseSchema = z.object({
  kind: z.enum(['mariadb-dump', 'pg-dump']),
  /** Object key relative to the snapshot directory, e.g. mariadb.sql.zst. */
  file: z.string().min(1),
  rawBytes: z.number().int().nonnegative(),
  storedBytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  service: z.string(),
  container: z.string(),
  /** The dump tool's options. */
  options: z.array(z.string()),
  databases: z.array(z.string()).min(1),
  /** PostgreSQL: the account the dump was taken as, which owns its objects (a drill's server gets it). */
  user: z.string().optional(),
  /** Rows the dump inserts per `database.table`; a restore checks the loaded server against them. */
  tables: z.record(z.string(), z.number().int().nonnegative()),
  /** The datadir volume that was dumped instead of archived; a restore recreates it fresh. */
  volume: z.object({ name: z.string(), dockerName: z.string(), destination: z.string() }),
});

/** How the run found Moodle, and so what the snapshot was taken with (moodle/report.ts). */
const siteSchema = z.object({
  /** The Moodle container; null: Moodle was not found. */
  moodle: z.string().nullable(),
  /** Moodle was in maintenance mode while the data was read (or, online, while the database was dumped). */
  maintenance: z.boolean(),
  /** Moodle's default excludes were applied to its dataroot. */
  moodleExcludes: z.boolean(),
  /** $CFG->dataroot and the volume it is on. */
  dataroot: z.string().nullable(),
  datarootVolume: z.string().nullable(),
  /** What the snapshot lacks, in words (also in the log and the success webhook). */
  warnings: z.array(z.string()),
});

const serviceSchema = z.object({
  service: z.string(),
  container: z.string(),
  image: z.string(),
  imageId: z.string(),
  action: z.enum(['stop', 'pause', 'none']),
});

export const manifestSchema = z
  .object({
    format: z.enum([FORMAT, FORMAT_STORE, FORMAT_SHARED_LISTS]),
    id: z.string().min(1),
    kind: z.enum(['manual', 'scheduled', 'pre-restore']),
    status: z.literal('ok'),
    createdAt: z.string(),
    completedAt: z.string(),
    tool: z.object({ name: z.string(), version: z.string() }),
    project: z.string(),
    /** The job that made it (config/jobs.ts); absent in snapshots made before jobs existed = "default". */
    job: z.string().min(1).optional(),
    mode: z.enum(['stop', 'pause', 'online']),
    codec: z.enum(['zstd', 'gzip', 'none']),
    /** null: stored in the clear; else how it was encrypted (never the key). */
    encryption: encryptionSchema.nullable().default(null),
    volumes: z.array(volumeSchema),
    // Fields added after the first release are optional, so manifests written before them still validate.
    database: databaseSchema.nullable().optional(),
    site: siteSchema.optional(),
    stack: z.object({
      services: z.array(serviceSchema),
      moodle: z.object({ version: z.string(), release: z.string() }).nullable().default(null),
      mariadb: z.object({ version: z.string() }).nullable().optional(),
    }),
    timings: z.object({
      quiesceMs: z.number(),
      readMs: z.number(),
      downtimeMs: z.number(),
      uploadMs: z.number(),
      totalMs: z.number(),
      /** Time the site spent in maintenance mode. */
      maintenanceMs: z.number().optional(),
    }),
  })
  .refine((m) => m.volumes.length > 0 || Boolean(m.database), {
    error: 'a snapshot holds at least one volume or a database dump',
    path: ['volumes'],
  });

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestVolume = z.infer<typeof volumeSchema>;
export type ManifestDatabase = z.infer<typeof databaseSchema>;
export type ManifestSite = z.infer<typeof siteSchema>;
export type ManifestBlobs = NonNullable<ManifestVolume['blobs']>;

/**
 * Bytes the snapshot's run wrote to the target: its archives and dump and, for a volume whose files went to
 * the store, its blob list, the shared list it started (if any) and the packs it stored. Not what the
 * snapshot references: packs and lists stored by earlier runs are not counted again.
 */
export function bytesWritten(m: Pick<Manifest, 'volumes' | 'database'>): number {
  let n = m.database?.storedBytes ?? 0;
  for (const v of m.volumes) {
    const b = v.blobs;
    n += v.storedBytes + (b ? b.storedBytes + b.packBytes + (b.base?.added ? b.base.storedBytes : 0) : 0);
  }
  return n;
}

export function serializeManifest(m: Manifest): string {
  return `${JSON.stringify(manifestSchema.parse(m), null, 2)}\n`;
}

/** Parses and validates a stored manifest; a damaged one is an INTEGRITY_FAILED error naming the snapshot. */
export function parseManifest(text: string, snapshotId: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `snapshot ${snapshotId}: manifest.json is not valid JSON`,
      undefined,
      {
        cause: err,
      },
    );
  }
  const r = manifestSchema.safeParse(json);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `snapshot ${snapshotId}: manifest.json is invalid (${issues})`,
    );
  }
  if (r.data.id !== snapshotId) {
    throw new SidecarError('INTEGRITY_FAILED', `snapshot ${snapshotId}: manifest belongs to ${r.data.id}`);
  }
  return r.data;
}

/** Snapshot ids sort by time: 20261123T163000Z-3f9a. */
export function newSnapshotId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${Math.random().toString(16).slice(2, 6)}`;
}

export function snapshotTime(id: string): Date | null {
  const m = id.match(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}
