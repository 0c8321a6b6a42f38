import { storeDecrypter } from '../archive/encryption.js';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import type { Backend } from '../storage/backend.js';
import { readBlobHashes } from './blob-hashes.js';
import type { BlobIndex } from './blob-index.js';
import { type BlobEntry, type DirEntry, readBlobList } from './blob-list.js';
import { PACKS_PREFIX } from './layout.js';

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
  const { blobs, where, decrypt, source } = opened;
  let count = 0;
  for await (const b of readBlobList(source, {
    sha256: blobs.sha256,
    codec: manifest.codec,
    decrypt,
    where,
    onDir,
  })) {
    count++;
    yield b;
  }
  if (count !== blobs.count)
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${where}: lists ${count} blobs, the manifest says ${blobs.count}`,
    );
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
  const { blobs, where, decrypt, source } = opened;
  const count = await readBlobHashes(
    source,
    { sha256: blobs.sha256, codec: manifest.codec, decrypt, where },
    onHash,
  );
  if (count !== blobs.count)
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${where}: lists ${count} blobs, the manifest says ${blobs.count}`,
    );
}

/** A volume's stored blob list, opened: its bytes and how to decrypt them; undefined without blobs. */
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
  return { blobs, where, decrypt, source: await backend.get(`${manifest.id}/${blobs.file}`) };
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
