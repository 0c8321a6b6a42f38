import { getCodec } from '../archive/codec.js';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import type { Config } from '../config/types.js';
import type { Backend } from '../storage/backend.js';
import type { BlobIndex } from '../store/blob-index.js';
import { readingEncoding, type StoreEncoding } from '../store/encoding.js';
import { checkPack } from '../store/pack-check.js';
import { blobProblem, snapshotBlobs, storedPacks } from '../store/snapshot-blobs.js';
import { loadIndex } from '../store/store-io.js';

interface Loaded {
  index: BlobIndex;
  stored: Awaited<ReturnType<typeof storedPacks>>;
}

/**
 * The store's side of verify, shared by every snapshot of one run: the index and the pack listing are read
 * once, and with --read-data each pack is downloaded and checked once however many snapshots need it.
 */
export class StoreVerifier {
  private loaded: Promise<Loaded> | undefined;
  private readonly encoding: StoreEncoding;
  /** Packs already read: undefined = good, else why not. */
  private readonly checked = new Map<string, string | undefined>();
  /** Every blob found good in a pack read so far: one bit per index slot (a million blobs: 125 KB, not 20 MB). */
  private found: Uint8Array | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly config: Pick<Config, 'compression' | 'encryption'>,
    private readonly signal?: AbortSignal,
  ) {
    this.encoding = readingEncoding(getCodec(config.compression), config.encryption);
  }

  /**
   * The closure of one volume's blob list: the list matches its checksum and count, and each blob is
   * indexed in a pack that is stored with its recorded size. With `readData`, each such pack is downloaded
   * and every blob in it hashed; each of the volume's blobs must be among the good ones. Throws
   * INTEGRITY_FAILED naming the first problems.
   */
  async check(m: Manifest, v: ManifestVolume, readData: boolean): Promise<string> {
    const { index, stored } = await this.load();
    const problems: string[] = [];
    // The volume's blobs by index slot, one bit each (a set of hashes was 20 MB more at a million blobs).
    const needed = new Uint8Array((index.size + 7) >>> 3);
    const found = this.found ?? new Uint8Array((index.size + 7) >>> 3);
    this.found = found;
    const packs = new Set<string>();
    let count = 0;
    for await (const b of snapshotBlobs(this.backend, m, v, this.config.encryption)) {
      count++;
      const hash = Buffer.from(b.sha1, 'hex');
      const p = blobProblem(hash, index, stored);
      if (p) {
        if (problems.length < 5) problems.push(p);
        continue;
      }
      if (!readData) continue;
      setBit(needed, index.slot(hash));
      packs.add(index.lookup(hash)?.packId as string);
    }
    if (problems.length > 0) this.fail(m, v, problems);
    if (!readData) return `${count} blobs, each in a stored pack of the recorded size`;
    for (const id of packs) {
      if (!this.checked.has(id)) {
        const pack = index.pack(id);
        const err = pack
          ? await checkPack(this.backend, this.encoding, pack, {
              onBlob: (h) => setBit(found, index.slot(h)),
              signal: this.signal,
            }).then(
              () => undefined,
              (e: unknown) => {
                if (this.signal?.aborted || (e instanceof SidecarError && e.code === 'DECRYPTION_FAILED'))
                  throw e;
                return (e as Error).message;
              },
            )
          : `pack ${id} is not indexed`;
        this.checked.set(id, err);
      }
      const err = this.checked.get(id);
      if (err && problems.length < 5) problems.push(err);
    }
    if (problems.length === 0) {
      for (let slot = 0; slot < index.size && problems.length < 5; slot++) {
        if (hasBit(needed, slot) && !hasBit(found, slot))
          problems.push(
            `blob ${Buffer.from(index.hashAt(slot)).toString('hex')} is not in the pack the index names`,
          );
      }
    }
    if (problems.length > 0) this.fail(m, v, problems);
    return `${count} blobs read back from ${packs.size} pack(s), every SHA-1 matches`;
  }

  private fail(m: Manifest, v: ManifestVolume, problems: string[]): never {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `snapshot ${m.id}, volume ${v.name}: blobs cannot be restored: ${problems.join('; ')}`,
      'this snapshot cannot be fully restored; take a new backup and restore another snapshot if needed',
    );
  }

  private load(): Promise<Loaded> {
    this.loaded ??= (async () => {
      const [index, stored] = await Promise.all([
        loadIndex(this.backend, this.encoding),
        storedPacks(this.backend),
      ]);
      return { index, stored };
    })();
    return this.loaded;
  }
}

/** Bit `i` of a bitmap set (a negative `i`, a hash the index does not hold, sets nothing). */
function setBit(bits: Uint8Array, i: number): void {
  if (i >= 0) bits[i >>> 3] = (bits[i >>> 3] ?? 0) | (1 << (i & 7));
}

function hasBit(bits: Uint8Array, i: number): boolean {
  return ((bits[i >>> 3] ?? 0) & (1 << (i & 7))) !== 0;
}
