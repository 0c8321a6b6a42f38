import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getCodec } from '../archive/codec.js';
import { LocalBackend } from '../storage/local.js';
import { BlobSet } from '../store/blob-set.js';
import { encodeIndex, type IndexedBlob } from '../store/index-file.js';
import { blobPath } from '../store/layout.js';
import { loadIndex } from '../store/store-io.js';

/**
 * The 1,000,000-blob memory bound, in a process of its own (`node dist/bench/index-memory.js MODE DIR N`):
 *   gen     writes index files for N blobs into DIR/store/index (300 blobs a pack, as 16 MiB packs of
 *           ~55 KB files hold; one index file a pack, as the backup writes them), nothing else
 *   rest    imports the same modules and stops: the process's own floor
 *   backup  loadIndex, then a backup's check of every listed blob against it (N listed entries, streamed)
 *   restore loadIndex, the snapshot's BlobSet of N entries, and every blob's lookup (the closure check)
 * and prints {mode, blobs, peakRssMb, heapUsedMb, indexMb} as JSON: peak RSS is the kernel's VmHWM.
 */
const BLOBS_PER_PACK = 300;

/** The i-th synthetic SHA-1 (deterministic, so `backup` and `restore` find what `gen` indexed). */
function sha1Of(i: number): Buffer {
  return createHash('sha1').update(`blob ${i}`).digest();
}

async function gen(dir: string, n: number): Promise<void> {
  const out = join(dir, 'store', 'index');
  await mkdir(out, { recursive: true });
  for (let first = 0, p = 0; first < n; first += BLOBS_PER_PACK, p++) {
    const blobs: IndexedBlob[] = [];
    for (let i = first; i < Math.min(n, first + BLOBS_PER_PACK); i++)
      blobs.push({ sha1: sha1Of(i), offset: 512 + (i - first) * 56_320, size: 55_000 });
    const id = createHash('sha256').update(`pack ${p}`).digest('hex');
    const file = encodeIndex([
      { pack: { id, storedSize: 16 << 20, codec: 'zstd', encrypted: false }, blobs },
    ]);
    await writeFile(join(out, createHash('sha256').update(file).digest('hex')), file);
  }
}

function vmHwmMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

async function main(): Promise<void> {
  const [mode, dir, count] = process.argv.slice(2);
  const n = Number(count);
  if (!dir || !Number.isFinite(n)) throw new Error('usage: index-memory.js gen|rest|backup|restore DIR N');
  if (mode === 'gen') return gen(dir, n);
  let indexMb = 0;
  if (mode === 'backup' || mode === 'restore') {
    // A backup loads the hashes alone (backup/blobs.ts); a restore's check looks up where each blob is.
    const index = await loadIndex(
      new LocalBackend(dir),
      { codec: getCodec('zstd') },
      { hashesOnly: mode === 'backup' },
    );
    indexMb = index.byteSize / 1048576;
    let found = 0;
    if (mode === 'backup') {
      // The listing yields one entry at a time; each is looked up, none is kept.
      for (let i = 0; i < n; i++) if (index.has(sha1Of(i))) found++;
    } else {
      const set = new BlobSet();
      for (let i = 0; i < n; i++) {
        const sha1 = sha1Of(i).toString('hex');
        set.add({ sha1, size: 55_000, mode: 0o640, uid: 1, gid: 1, mtimeMs: 1.7e12, path: blobPath(sha1) });
      }
      for (let i = 0; i < set.length; i++) if (index.lookup(set.hash(i))) found++;
    }
    if (found !== n) throw new Error(`${mode}: ${found} of ${n} blobs found in the index`);
  } else if (mode !== 'rest') throw new Error(`unknown mode ${mode}`);
  const heapUsedMb = Math.round(process.memoryUsage().heapUsed / 1048576);
  process.stdout.write(
    `${JSON.stringify({ mode, blobs: n, peakRssMb: vmHwmMb(), heapUsedMb, indexMb: Math.round(indexMb) })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
