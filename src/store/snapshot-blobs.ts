import { storeDecrypter } from '../archive/encryption.js';
import type { Manifest, ManifestBlobs, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import type { Backend } from '../storage/backend.js';
import { readBlobHashes } from './blob-hashes.js';
import type { BlobIndex } from './blob-index.js';
import { type BlobEntry, type DirEntry, type ListSource, readBlobList } from './blob-list.js';
import { listKey, PACKS_PREFIX } from './layout.js';
import { BlobPathKeys, pathStart, readDeltaList } from './list-delta.js';

/**
 * One snapshot volume's blob list, entry by entry, for the callers that need only a pass over it (prune's
 * mark, verify). The stored bytes' sha256 and the manifest's count are checked at the end: act on what was
 * read only once the generator has finished.
 */
export async function* snapshotBlobs(
  backend: Backend,
  manifest: Manifest,
  v: ManifestVolume,
  encryption: EncryptionConfig | undefined,
  onDir?: (d: DirEntry) => void,
): AsyncGenerator<BlobEntry> {
  const opened = await openList(backend, manifest, v, encryption);
  if (!opened) return;
  const { blobs, where, source } = opened;
  let count = 0;
  if (!blobs.base) {
    for await (const b of readBlobList(source, { ...opened.list, onDir })) {
      count++;
      yield b;
    }
  } else {
    // The delta twice (it is small): first the paths it names, then, after the base, its own lines.
    const named = new Set<string>();
    for await (const it of readDeltaList(source, opened.list)) {
      if (it.kind === 'base') checkBase(it, blobs.base, where);
      else named.add(it.kind === 'gone' ? it.path : it.entry.path);
    }
    const base = await openBase(backend, manifest, v, opened.list);
    const keep = (d: DirEntry) => {
      if (!named.has(d.path)) onDir?.(d);
    };
    for await (const b of readBlobList(base.source, { ...base.list, onDir: keep })) {
      if (named.has(b.path)) continue;
      count++;
      yield b;
    }
    for await (const it of readDeltaList(await backend.get(opened.key), opened.list)) {
      if (it.kind === 'blob') {
        count++;
        yield it.entry;
      } else if (it.kind === 'dir') onDir?.(it.entry);
    }
  }
  checkCount(count, blobs.count, where);
}

/** Only the hashes of one snapshot volume's blob list (prune's mark), its checksum and count checked. */
export async function snapshotBlobHashes(
  backend: Backend,
  manifest: Manifest,
  v: ManifestVolume,
  encryption: EncryptionConfig | undefined,
  onHash: (sha1: Uint8Array) => void,
): Promise<void> {
  const opened = await openList(backend, manifest, v, encryption);
  if (!opened) return;
  const { blobs, where, source } = opened;
  if (!blobs.base) {
    checkCount(await readBlobHashes(source, opened.list, onHash), blobs.count, where);
    return;
  }
  // The delta's own blobs are marked while it is read (a mark is a union: order does not matter); the
  // base's lines at a path the delta names are left out, matched by their bytes (no string a line).
  const named = new BlobPathKeys();
  let count = 0;
  for await (const it of readDeltaList(source, opened.list)) {
    if (it.kind === 'base') checkBase(it, blobs.base, where);
    else if (it.kind === 'gone') named.add(it.path);
    else if (it.kind === 'blob') {
      named.add(it.entry.path);
      onHash(Buffer.from(it.entry.sha1, 'hex'));
      count++;
    }
  }
  named.seal();
  const base = await openBase(backend, manifest, v, opened.list);
  count += await readBlobHashes(base.source, base.list, onHash, (buf, start, end) =>
    named.has(buf, pathStart(buf, start, end), end),
  );
  checkCount(count, blobs.count, where);
}

function checkCount(count: number, expected: number, where: string): void {
  if (count !== expected)
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${where}: lists ${count} blobs, the manifest says ${expected}`,
    );
}

/** The delta's base line must name the base the manifest names. */
function checkBase(
  it: { sha256: string; count: number },
  base: NonNullable<ManifestBlobs['base']>,
  where: string,
): void {
  if (it.sha256 !== base.sha256 || it.count !== base.count)
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${where}: names base list ${it.sha256} (${it.count} blobs), the manifest says ${base.sha256} (${base.count})`,
    );
}

/** The shared base list a delta names, opened (a missing one is a damaged snapshot, said as such). */
async function openBase(backend: Backend, manifest: Manifest, v: ManifestVolume, list: ListSource) {
  const base = v.blobs?.base as NonNullable<ManifestBlobs['base']>;
  const key = listKey(base.sha256);
  const where = `snapshot ${manifest.id}, volume ${v.name}: base list ${key}`;
  const stat = await backend.stat(key);
  if (!stat)
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${where} is missing`,
      'the snapshot cannot be restored without it: run `verify --all` to see which snapshots share it',
    );
  if (stat.size !== base.storedBytes)
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${where} has ${stat.size} bytes, not ${base.storedBytes}`,
      'the stored file was changed or damaged',
    );
  return { source: await backend.get(key), list: { ...list, sha256: base.sha256, where } };
}

/** A volume's stored blob list, opened: its bytes and how to read them; undefined without blobs. */
async function openList(
  backend: Backend,
  manifest: Manifest,
  v: ManifestVolume,
  encryption: EncryptionConfig | undefined,
) {
  const blobs = v.blobs;
  if (!blobs) return undefined;
  const where = `snapshot ${manifest.id}, volume ${v.name}: ${blobs.file}`;
  const encrypted = blobs.file.endsWith('.age');
  const decrypt = encrypted ? storeDecrypter(encryption, blobs.file) : undefined;
  if (encrypted && !decrypt) {
    throw new SidecarError(
      'DECRYPTION_FAILED',
      `${where} is encrypted and no age identity or passphrase is configured`,
      'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_PASSPHRASE) to the key the backups were made with',
    );
  }
  const key = `${manifest.id}/${blobs.file}`;
  const list: ListSource = { sha256: blobs.sha256, codec: manifest.codec, decrypt, where };
  return { blobs, where, key, list, source: await backend.get(key) };
}

/** Stored packs by id → size in bytes (one listing of store/packs/). */
export async function storedPacks(backend: Backend): Promise<Map<string, { size: number; modified: Date }>> {
  const out = new Map<string, { size: number; modified: Date }>();
  for (const o of await backend.list(PACKS_PREFIX)) {
    const id = o.key.slice(o.key.lastIndexOf('/') + 1);
    if (/^[0-9a-f]{64}$/.test(id) && o.key === `${PACKS_PREFIX}${id.slice(0, 2)}/${id}`)
      out.set(id, { size: o.size, modified: o.modified });
  }
  return out;
}

/**
 * Why a blob cannot be restored from the store, or undefined when it can: it must be indexed, and the pack
 * the index names must be stored with the size the index recorded.
 */
export function blobProblem(
  hash: Uint8Array,
  index: BlobIndex,
  stored: Map<string, { size: number }>,
): string | undefined {
  const at = index.lookup(hash);
  if (!at) return `blob ${Buffer.from(hash).toString('hex')} is in no pack`;
  const record = index.pack(at.packId);
  const size = stored.get(at.packId)?.size;
  if (size === undefined) return `pack ${at.packId} is missing`;
  if (record && size !== record.storedSize)
    return `pack ${at.packId} has ${size} bytes, not ${record.storedSize}`;
  return undefined;
}
