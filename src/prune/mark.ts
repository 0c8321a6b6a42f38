import type { SnapshotEntry } from '../archive/catalog.js';
import type { EncryptionConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';
import { HashSet20 } from '../store/hash-set.js';
import { snapshotBlobHashes } from '../store/snapshot-blobs.js';

export type Mark =
  | { ok: true; live: HashSet20; snapshots: number; lists: number; bases: Set<string> }
  /** Some kept snapshot's blobs are unknown: the sweep must delete nothing. */
  | { ok: false; reason: string };

/**
 * The mark of mark-and-sweep: the union of the blob lists of every snapshot that stays at the target (every
 * job's, not only the pruned one's). A kept entry whose manifest is damaged, or a blob list that cannot be
 * read or does not match its checksum, leaves its blobs unknown, and then no pack may be deleted.
 * Incomplete entries (no manifest) are not restorable and protect nothing. `gone`: ids retention forgot.
 */
export async function markKept(
  backend: Backend,
  listed: SnapshotEntry[],
  gone: Set<string>,
  encryption: EncryptionConfig | undefined,
  log: Logger,
): Promise<Mark> {
  // Listed at all, even if retention just deleted it: an unreadable manifest may be a passing read error.
  const damaged = listed.filter((e) => e.status === 'damaged');
  const kept = listed.filter((e) => !gone.has(e.id));
  if (damaged.length > 0) {
    return {
      ok: false,
      reason: `snapshot ${damaged.map((e) => e.id).join(', ')} has a damaged manifest: its blobs are unknown`,
    };
  }
  const live = new HashSet20();
  // Kept snapshots share most blobs: the union is about the largest list, so the set is sized once for it.
  live.reserve(
    Math.max(
      0,
      ...kept.flatMap((e) =>
        (e.status === 'ok' ? (e.manifest?.volumes ?? []) : []).map((v) => v.blobs?.count ?? 0),
      ),
    ),
  );
  let snapshots = 0;
  let lists = 0;
  // The shared lists (store/lists/) kept snapshots' lists name: the sweep keeps those.
  const bases = new Set<string>();
  const t0 = Date.now();
  for (const e of kept) {
    const m = e.manifest;
    if (e.status !== 'ok' || !m) continue;
    snapshots++;
    for (const v of m.volumes) {
      if (!v.blobs) continue;
      if (v.blobs.base) bases.add(v.blobs.base.sha256);
      try {
        await snapshotBlobHashes(backend, m, v, encryption, (h) => live.add(h));
      } catch (err) {
        return {
          ok: false,
          reason: `the blob list of snapshot ${m.id}, volume ${v.name} cannot be read: ${(err as Error).message}`,
        };
      }
      lists++;
    }
  }
  live.seal();
  log.info(
    { step: 'sweep', phase: 'mark', snapshots, lists, blobs: live.length, ms: Date.now() - t0 },
    `mark: ${live.length} blob(s) referenced by ${lists} blob list(s) of ${snapshots} kept snapshot(s)`,
  );
  return { ok: true, live, snapshots, lists, bases };
}
