import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observe/logger.js';
import { prune } from '../../src/prune/run.js';
import type { Backend } from '../../src/storage/backend.js';
import { createBackend } from '../../src/storage/index.js';
import { INDEX_PREFIX, packKey } from '../../src/store/layout.js';
import { loadIndex } from '../../src/store/store-io.js';
import { type TempDirs, tempDirs } from '../harness/config.js';
import { KEEP_LAST_2 } from '../harness/retention.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';
import {
  Dataroot,
  packContents,
  packIds,
  packsNeeded,
  restoreBlobs,
  type StoredSnapshot,
  snapshotDataroot,
  ZSTD,
} from '../harness/store-target.js';

const HOUR = 3_600_000;
const KiB = 1024;

/** The shared lists stored now (ids). */
async function listIds(backend: Backend): Promise<string[]> {
  return (await backend.list('store/lists/')).map((o) => o.key.slice(o.key.lastIndexOf('/') + 1)).sort();
}

/** Every index file names only stored packs, and every stored pack is indexed. */
async function expectConsistent(backend: Backend): Promise<void> {
  const indexed = [...(await packContents(backend)).keys()].sort();
  expect(indexed).toEqual(await packIds(backend));
}

describe.each([
  { name: 'local directory', s3: false, shared: false },
  { name: 'S3', s3: true, shared: false },
  { name: 'local directory, lists as differences from a shared base,', s3: false, shared: true },
  { name: 'S3, lists as differences from a shared base,', s3: true, shared: true },
])('prune sweeps the blob store on a $name target', ({ s3, shared }) => {
  let dirs: TempDirs;
  let backend: Backend & { close?: () => void };
  const t0 = Date.now() - 10 * HOUR;

  beforeAll(async () => {
    dirs = await tempDirs('prune-store');
    backend = s3
      ? createBackend(testS3Target(await createTestBucket('prune-store'), 'site'))
      : createBackend({ type: 'local', path: dirs.archive });
  });
  afterAll(async () => {
    backend?.close?.();
    await dirs?.remove();
  });

  it('frees exactly the packs no kept snapshot needs (and an old unindexed one); kept snapshots restore byte for byte', async () => {
    // 32 KiB packs of ~6 KiB blobs: each snapshot's new blobs fill a few packs of their own.
    const o = { packSize: 32 * KiB, spool: join(dirs.spool, 'a'), ...(shared ? { shared: {} } : {}) };
    const d = new Dataroot(join(dirs.root, 'dataroot-a'));
    // Each snapshot's new blobs go to packs of their own: A's packs die with s1 and s2, B's stay (partly).
    const a = await d.add(12);
    const snaps: StoredSnapshot[] = [];
    snaps.push(await snapshotDataroot(backend, d, new Date(t0), o));
    const b = await d.add(12);
    snaps.push(await snapshotDataroot(backend, d, new Date(t0 + HOUR), o));
    await d.remove([...a, ...b.slice(0, 6)]); // deleted on the site: only s1 and s2 hold them
    await d.add(12);
    snaps.push(await snapshotDataroot(backend, d, new Date(t0 + 2 * HOUR), o));
    await d.add(6);
    snaps.push(await snapshotDataroot(backend, d, new Date(t0 + 3 * HOUR), o));
    const kept = snaps.slice(2);
    // A crashed backup's pack: stored, never indexed.
    const orphanBytes = randomBytes(3000);
    const orphan = createHash('sha256').update(orphanBytes).digest('hex');
    await backend.put(packKey(orphan), Readable.from([orphanBytes]));

    const before = await packIds(backend);
    const needed = await packsNeeded(backend, kept);
    const dead = before.filter((id) => !needed.includes(id) && id !== orphan);
    expect(dead.length).toBeGreaterThanOrEqual(2);
    expect(needed.length).toBeGreaterThanOrEqual(4);
    const deadBytes = (await backend.list('store/packs/'))
      .filter((x) => dead.some((id) => x.key.endsWith(id)))
      .reduce((n, x) => n + x.size, 0);

    // A day later, so the orphan is past the grace period; repacking off: only whole dead packs go.
    const now = new Date(Date.now() + 25 * HOUR);
    const opts = {
      now,
      log: silentLogger(),
      store: { compression: 'zstd' as const, spoolDir: dirs.spool, repackBelow: 0 },
    };
    const dry = await prune(backend, KEEP_LAST_2, { ...opts, dryRun: true });
    expect(dry.store).toMatchObject({ deadPacks: dead.length, deadBytes, orphanPacks: 1, orphanBytes: 3000 });
    expect(await packIds(backend)).toEqual(before);

    const r = await prune(backend, KEEP_LAST_2, opts);
    expect([...r.deleted].sort()).toEqual(
      snaps
        .slice(0, 2)
        .map((s) => s.manifest.id)
        .sort(),
    );
    expect(r.store).toMatchObject({ deadPacks: dead.length, deadBytes, orphanPacks: 1, repackPacks: 0 });
    expect(await packIds(backend)).toEqual(needed);
    await expectConsistent(backend);
    for (const s of kept) expect(await restoreBlobs(backend, s, join(dirs.root, 'out'))).toEqual(s.files);

    // Nothing more to do.
    const again = await prune(backend, KEEP_LAST_2, opts);
    expect(again.store).toMatchObject({ deadPacks: 0, orphanPacks: 0, repackPacks: 0, deadLists: 0 });
    expect(await packIds(backend)).toEqual(needed);
    if (!shared) return;

    // The kept snapshots' lists name s1's base (the deleted blobs are "gone" lines there): it stays, and
    // the mark above left those blobs out all the same. A new base, once no kept snapshot names the old
    // one, takes its place.
    const bases = (m: StoredSnapshot) => m.manifest.volumes.map((v) => v.blobs?.base?.sha256);
    expect(bases(kept[0] as StoredSnapshot)).toEqual(bases(snaps[0] as StoredSnapshot));
    expect(await listIds(backend)).toEqual(bases(snaps[0] as StoredSnapshot));
    o.shared = {}; // the state's copy lost: the next run writes a new base
    const s5 = await snapshotDataroot(backend, d, new Date(t0 + 4 * HOUR), o);
    const s6 = await snapshotDataroot(backend, d, new Date(t0 + 5 * HOUR), o);
    expect(bases(s6)).toEqual(bases(s5));
    expect(bases(s5)).not.toEqual(bases(snaps[0] as StoredSnapshot));
    const last = await prune(backend, KEEP_LAST_2, { ...opts, now: new Date(Date.now() + 50 * HOUR) });
    expect(last.store).toMatchObject({ deadLists: 1 });
    expect(await listIds(backend)).toEqual(bases(s5));
    for (const x of [s5, s6]) expect(await restoreBlobs(backend, x, join(dirs.root, 'out'))).toEqual(x.files);
  });
});

describe('prune repacks and refuses on a local target', () => {
  let dirs: TempDirs;
  let backend: Backend;
  const t0 = Date.now() - 10 * HOUR;

  beforeAll(async () => {
    dirs = await tempDirs('prune-repack');
    backend = createBackend({ type: 'local', path: dirs.archive });
  });
  afterAll(async () => {
    await dirs?.remove();
  });

  it('repacks a mostly dead pack: its live blobs go to a new pack, then it goes', async () => {
    const o = { packSize: 1024 * KiB, spool: join(dirs.spool, 'r') };
    const d = new Dataroot(join(dirs.root, 'dataroot-r'));
    const first = await d.add(10);
    const s1 = await snapshotDataroot(backend, d, new Date(t0), o);
    await d.remove(first.slice(0, 7));
    const s2 = await snapshotDataroot(backend, d, new Date(t0 + HOUR), o);
    await d.add(4);
    const s3 = await snapshotDataroot(backend, d, new Date(t0 + 2 * HOUR), o);
    // s1's pack (10 blobs), s3's pack (4 new ones); s2 added nothing.
    const before = await packContents(backend);
    expect(before.size).toBe(2);
    const oldPack = [...before].find(([, blobs]) => blobs.has(first[0] as string))?.[0] as string;
    const s3Pack = [...before.keys()].find((id) => id !== oldPack) as string;

    const r = await prune(backend, KEEP_LAST_2, {
      log: silentLogger(),
      store: { compression: 'zstd', spoolDir: dirs.spool },
    });
    expect(r.deleted).toEqual([s1.manifest.id]);
    expect(r.store).toMatchObject({ deadPacks: 0, repackPacks: 1, newPacks: 1 });
    const after = await packContents(backend);
    expect(after.has(oldPack)).toBe(false);
    expect(after.get(s3Pack)).toEqual(before.get(s3Pack));
    const fresh = [...after].filter(([id]) => id !== s3Pack);
    expect(fresh).toHaveLength(1);
    expect([...(fresh[0]?.[1] ?? [])].sort()).toEqual(first.slice(7).sort());
    await expectConsistent(backend);
    for (const s of [s2, s3]) expect(await restoreBlobs(backend, s, join(dirs.root, 'out'))).toEqual(s.files);
  });

  it('a kept snapshot whose blob list is damaged makes the sweep delete nothing, with a warning', async () => {
    const o = { packSize: 32 * KiB, spool: join(dirs.spool, 'x') };
    const d = new Dataroot(join(dirs.root, 'dataroot-x'));
    await d.add(8);
    const s4 = await snapshotDataroot(backend, d, new Date(t0 + 3 * HOUR), o);
    await d.remove(d.hashes());
    await d.add(8);
    await snapshotDataroot(backend, d, new Date(t0 + 4 * HOUR), o);
    // keepLast 2 forgets s2 and s3 (s4 and s5 stay); s2/s3's blobs become dead.
    const listKey = `${s4.manifest.id}/moodledata_data.blobs.zst`;
    const good = await backend.get(listKey).then(async (s) => Buffer.concat(await s.toArray()));
    await backend.put(listKey, Readable.from([Buffer.concat([good, Buffer.from([0])])]));
    const before = await packIds(backend);
    const indexBefore = (await backend.list(INDEX_PREFIX)).length;
    const warnings: string[] = [];
    const log = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          warnings.push(String(JSON.parse(chunk.toString()).msg));
          done();
        },
      }),
    );
    const r = await prune(backend, KEEP_LAST_2, {
      log,
      store: { compression: 'zstd', spoolDir: dirs.spool },
    });
    expect(r.deleted).toHaveLength(2);
    expect(r.store?.refused).toMatch(new RegExp(`blob list of snapshot ${s4.manifest.id}.*cannot be read`));
    expect(warnings.join('\n')).toMatch(/store sweep refused, no pack deleted/);
    expect(await packIds(backend)).toEqual(before);
    expect((await backend.list(INDEX_PREFIX)).length).toBe(indexBefore);
    expect((await loadIndex(backend, ZSTD)).packCount).toBe(before.length);
  });
});
