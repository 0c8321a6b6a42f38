import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { getCodec } from '../../src/archive/codec.js';
import {
  FORMAT_SHARED_LISTS,
  FORMAT_STORE,
  type Manifest,
  type ManifestBlobs,
  newSnapshotId,
  serializeManifest,
} from '../../src/archive/manifest.js';
import { LineFile } from '../../src/common/line-file.js';
import { silentLogger } from '../../src/observe/logger.js';
import { placeBlobs, verifyBlobs } from '../../src/restore/blobs.js';
import type { Backend } from '../../src/storage/backend.js';
import { type BlobListSummary, BlobListWriter, formatBlobLine } from '../../src/store/blob-list.js';
import type { StoreEncoding } from '../../src/store/encoding.js';
import { listKey, PACKS_PREFIX } from '../../src/store/layout.js';
import { listBlobs } from '../../src/store/listing.js';
import { PackWriter } from '../../src/store/pack-writer.js';
import { type KeptBase, writeSnapshotList } from '../../src/store/snapshot-list.js';
import { loadIndex } from '../../src/store/store-io.js';
import { treeHashes } from './dataroot.js';

/**
 * Snapshots of a dataroot written the way backup writes an incremental volume (src/backup/blobs.ts): the
 * store's index loaded, every blob it lacks packed, the blob list, a tarball of the rest, the manifest last.
 * No stack needed: prune and verify only read what lands at the target.
 */
export const ZSTD: StoreEncoding = { codec: getCodec('zstd') };

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
const blobAt = (h: string) => `filedir/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;

/** A dataroot the test edits between snapshots: blobs in, blobs out. */
export class Dataroot {
  /** path → SHA-1 of every blob present now. */
  readonly files = new Map<string, string>();
  private n = 0;
  constructor(readonly root: string) {}

  /** Adds `count` new blobs of about `size` bytes (random: packs do not compress them away). */
  async add(count: number, size = 6000): Promise<string[]> {
    const added: string[] = [];
    for (let i = 0; i < count; i++) {
      const data = randomBytes(size + ((this.n++ * 37) % 997));
      const h = sha1(data);
      await mkdir(join(this.root, dirname(blobAt(h))), { recursive: true });
      await writeFile(join(this.root, blobAt(h)), data, { mode: 0o640 });
      this.files.set(blobAt(h), h);
      added.push(h);
    }
    return added;
  }

  async remove(hashes: string[]): Promise<void> {
    for (const h of hashes) {
      await unlink(join(this.root, blobAt(h)));
      this.files.delete(blobAt(h));
    }
  }

  hashes(): string[] {
    return [...this.files.values()];
  }
}

export interface StoredSnapshot {
  manifest: Manifest;
  /** What the snapshot holds: path → SHA-1. */
  files: Map<string, string>;
}

/** One incremental snapshot of `d` at `backend`, created at `createdAt`. */
export async function snapshotDataroot(
  backend: Backend,
  d: Dataroot,
  createdAt: Date,
  o: {
    packSize: number;
    spool: string;
    /** Lists as differences from a shared base (format 3), the base carried here from run to run. */
    shared?: { base?: KeptBase };
  },
): Promise<StoredSnapshot> {
  const id = newSnapshotId(createdAt);
  const index = await loadIndex(backend, ZSTD);
  const writer = new PackWriter({ backend, index, encoding: ZSTD, spoolDir: o.spool, packSize: o.packSize });
  await mkdir(o.spool, { recursive: true });
  const listPath = join(o.spool, `${id}.blobs`);
  const linesPath = join(o.spool, `${id}.lines`);
  const lines = new LineFile(linesPath);
  let count = 0;
  let bytes = 0;
  for await (const l of listBlobs(d.root)) {
    if (l.kind !== 'blob') continue;
    const r = await writer.add(d.root, l);
    await lines.add(formatBlobLine({ ...l, sha1: r.sha1 }));
    count++;
    bytes += l.size;
  }
  await writer.finish();
  await lines.finish();
  let s: BlobListSummary;
  let base: ManifestBlobs['base'];
  if (o.shared) {
    const baseLines = join(o.spool, `${id}.base-lines`);
    const r = await writeSnapshotList({
      backend,
      encoding: ZSTD,
      text: () => createReadStream(linesPath),
      count,
      bytes,
      path: listPath,
      basePath: join(o.spool, `${id}.base`),
      baseLinesPath: baseLines,
      previous: o.shared.base,
    });
    if (r.newBase) {
      await backend.put(listKey(r.base.sha256), Readable.from([await readFile(r.newBase.path)]));
      o.shared.base = { ...r.base, linesPath: baseLines, textSha256: r.newBase.textSha256 };
    }
    s = r.summary;
    base = r.base;
  } else {
    const list = new BlobListWriter(listPath, ZSTD);
    await list.addLines(await readFile(linesPath), count, bytes);
    s = await list.finish();
  }
  await rm(linesPath);
  const listFile = 'moodledata_data.blobs.zst';
  await backend.put(`${id}/${listFile}`, Readable.from([await readFile(listPath)]));
  await rm(listPath);
  // The tarball of everything but the blobs: here just the top directory.
  const empty = await mkdtemp(join(tmpdir(), 'store-tar-'));
  const tar = execFileSync('tar', ['-C', empty, '--numeric-owner', '-c', '.']);
  await rm(empty, { recursive: true });
  const tarZst = execFileSync('zstd', ['-q', '-c'], { input: tar });
  await backend.put(`${id}/moodledata_data.tar.zst`, Readable.from([tarZst]));
  const manifest: Manifest = {
    format: base ? FORMAT_SHARED_LISTS : FORMAT_STORE,
    id,
    kind: 'scheduled',
    status: 'ok',
    createdAt: createdAt.toISOString(),
    completedAt: createdAt.toISOString(),
    tool: { name: 'moodle-backup-sidecar', version: '0.0.0-test' },
    project: 'store-test',
    mode: 'stop',
    codec: 'zstd',
    encryption: null,
    volumes: [
      {
        name: 'moodledata_data',
        dockerName: 'store-test_moodledata_data',
        file: 'moodledata_data.tar.zst',
        rawBytes: tar.length,
        storedBytes: tarZst.length,
        sha256: createHash('sha256').update(tarZst).digest('hex'),
        mountedAt: [{ service: 'moodle', destination: '/bitnami/moodledata' }],
        excluded: [],
        blobs: {
          file: listFile,
          sha256: s.sha256,
          storedBytes: s.storedBytes,
          count: s.count,
          bytes: s.bytes,
          added: writer.stats.blobs,
          addedBytes: writer.stats.readBytes,
          packBytes: writer.stats.storedBytes,
          mismatches: [],
          beforeMs: 0,
          insideMs: 0,
          ...(base ? { base } : {}),
        },
      },
    ],
    stack: { services: [], moodle: null },
    timings: { quiesceMs: 0, readMs: 0, downtimeMs: 0, uploadMs: 0, totalMs: 0 },
  };
  await backend.put(`${id}/manifest.json`, Readable.from([serializeManifest(manifest)]));
  return { manifest, files: new Map(d.files) };
}

/** Restores a snapshot's blobs with restore's own code into an empty directory; path → SHA-1 of what came out. */
export async function restoreBlobs(
  backend: Backend,
  s: StoredSnapshot,
  into: string,
): Promise<Map<string, string>> {
  await rm(into, { recursive: true, force: true });
  await mkdir(into, { recursive: true });
  const store = await verifyBlobs(backend, s.manifest, s.manifest.volumes, undefined, silentLogger());
  const set = store?.sets.get('moodledata_data');
  if (!store || !set) throw new Error(`snapshot ${s.manifest.id} has no blobs`);
  await placeBlobs({ backend, store, set, into, live: null });
  return treeHashes(into);
}

/** The packs stored now (ids). */
export async function packIds(backend: Backend): Promise<string[]> {
  return (await backend.list(PACKS_PREFIX)).map((o) => o.key.slice(o.key.lastIndexOf('/') + 1)).sort();
}

/** Pack id → the blobs the index says it holds. */
export async function packContents(backend: Backend): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const e of (await loadIndex(backend, ZSTD)).entries()) {
    const set = out.get(e.packId) ?? new Set<string>();
    set.add(Buffer.from(e.sha1).toString('hex'));
    out.set(e.packId, set);
  }
  return out;
}

/** The packs that hold at least one blob of `snapshots` (no blob is stored twice in these tests). */
export async function packsNeeded(backend: Backend, snapshots: StoredSnapshot[]): Promise<string[]> {
  const need = new Set(snapshots.flatMap((s) => [...s.files.values()]));
  return [...(await packContents(backend))]
    .filter(([, blobs]) => [...blobs].some((h) => need.has(h)))
    .map(([id]) => id)
    .sort();
}
