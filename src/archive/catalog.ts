import type { Readable } from 'node:stream';
import { isSidecarError, SidecarError } from '../common/errors.js';
import { DEFAULT_JOB } from '../config/jobs.js';
import type { Backend, ObjectInfo } from '../storage/backend.js';
import { MANIFEST_NAME, type Manifest, parseManifest, snapshotTime } from './manifest.js';

export interface SnapshotEntry {
  id: string;
  time: Date;
  /** ok: manifest present and valid; incomplete: no manifest (a failed or running backup); damaged: manifest unreadable. */
  status: 'ok' | 'incomplete' | 'damaged';
  manifest?: Manifest;
  objects: ObjectInfo[];
  storedBytes: number;
  /** Newest object time: how long an incomplete entry has been lying there. */
  modified: Date;
  error?: string;
}

async function readAll(stream: Readable, limit = 16 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += (c as Buffer).length;
    if (size > limit) throw new Error(`larger than ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The job a snapshot belongs to; snapshots from before jobs existed belong to the implicit one. */
export function jobOf(manifest: Pick<Manifest, 'job'>): string {
  return manifest.job ?? DEFAULT_JOB;
}

/**
 * The entries one job's retention and health look at: its own snapshots, plus entries without a readable
 * manifest (leftovers of any job, swept by age). `job` undefined: every entry.
 */
export function entriesOfJob(entries: SnapshotEntry[], job: string | undefined): SnapshotEntry[] {
  if (job === undefined) return entries;
  return entries.filter((e) => !e.manifest || jobOf(e.manifest) === job);
}

/** Reads and validates one snapshot's manifest; SNAPSHOT_NOT_FOUND when it has none. */
export async function readManifest(backend: Backend, id: string): Promise<Manifest> {
  let stream: Readable;
  try {
    stream = await backend.get(`${id}/${MANIFEST_NAME}`);
  } catch (err) {
    if (isSidecarError(err, 'STORAGE_NOT_FOUND')) {
      throw new SidecarError(
        'SNAPSHOT_NOT_FOUND',
        `snapshot ${id} does not exist at ${backend.location} (no ${MANIFEST_NAME})`,
        'list snapshots with `snapshots`',
      );
    }
    throw err;
  }
  return parseManifest(await readAll(stream), id);
}

/** Every snapshot directory at the target, newest first, with its status. */
export async function listSnapshots(backend: Backend): Promise<SnapshotEntry[]> {
  const groups = new Map<string, ObjectInfo[]>();
  for (const o of await backend.list('')) {
    const slash = o.key.indexOf('/');
    if (slash <= 0) continue; // not inside a snapshot directory
    const id = o.key.slice(0, slash);
    if (!snapshotTime(id)) continue; // foreign directory
    const list = groups.get(id) ?? [];
    list.push(o);
    groups.set(id, list);
  }
  const entries: SnapshotEntry[] = [];
  for (const [id, objects] of groups) {
    const entry: SnapshotEntry = {
      id,
      time: snapshotTime(id) as Date,
      status: 'incomplete',
      objects,
      storedBytes: objects.reduce((a, o) => a + o.size, 0),
      modified: new Date(Math.max(...objects.map((o) => o.modified.getTime()))),
    };
    if (objects.some((o) => o.key === `${id}/${MANIFEST_NAME}`)) {
      try {
        entry.manifest = await readManifest(backend, id);
        entry.status = 'ok';
        entry.time = new Date(entry.manifest.createdAt);
      } catch (err) {
        entry.status = 'damaged';
        entry.error = (err as Error).message;
      }
    }
    entries.push(entry);
  }
  return entries.sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
}

/**
 * `latest` (newest complete snapshot that is not a pre-restore one; of `job` only, when given) or an id or
 * unique id prefix.
 */
export async function resolveSnapshot(backend: Backend, ref: string, job?: string): Promise<Manifest> {
  if (ref === 'latest') {
    const latest = entriesOfJob(await listSnapshots(backend), job).find(
      (s) => s.status === 'ok' && s.manifest?.kind !== 'pre-restore',
    );
    if (!latest?.manifest) {
      throw new SidecarError(
        'SNAPSHOT_NOT_FOUND',
        `no complete snapshot at ${backend.location}`,
        'run `backup` first',
      );
    }
    return latest.manifest;
  }
  if (!/^[0-9A-Za-z-]+$/.test(ref)) {
    throw new SidecarError(
      'USAGE',
      `"${ref}" is not a snapshot id`,
      'ids look like 20261123T163000Z-3f9a; see `snapshots`',
    );
  }
  if (snapshotTime(ref) && ref.length >= 21) return readManifest(backend, ref);
  const matches = (await listSnapshots(backend)).filter((s) => s.id.startsWith(ref) && s.status === 'ok');
  if (matches.length === 1 && matches[0]?.manifest) return matches[0].manifest;
  if (matches.length > 1) {
    throw new SidecarError('USAGE', `"${ref}" matches ${matches.length} snapshots`, 'give more of the id');
  }
  throw new SidecarError(
    'SNAPSHOT_NOT_FOUND',
    `no complete snapshot "${ref}" at ${backend.location}`,
    'see `snapshots`',
  );
}
