import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getCodec } from '../../src/archive/codec.js';
import { encryptionPlan } from '../../src/archive/encryption.js';
import { isSidecarError } from '../../src/common/errors.js';
import type { Backend } from '../../src/storage/backend.js';
import { LocalBackend } from '../../src/storage/local.js';
import { S3Backend } from '../../src/storage/s3.js';
import type { StoreEncoding } from '../../src/store/encoding.js';
import { blobPath, PACKS_PREFIX } from '../../src/store/layout.js';
import { type Listed, listBlobs } from '../../src/store/listing.js';
import { extractPack } from '../../src/store/pack-reader.js';
import { type AddResult, PackWriter } from '../../src/store/pack-writer.js';
import { loadIndex } from '../../src/store/store-io.js';
import { type GeneratedDataroot, generateDataroot, treeHashes } from '../harness/dataroot.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';

const MiB = 1024 * 1024;
/** Small packs, so a few hundred files make several packs and the large files packs of their own. */
const PACK_SIZE = 1 * MiB;
const zstd: StoreEncoding = { codec: getCodec('zstd') };

let work: string;
let root: string;
let gen: GeneratedDataroot;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'store-rt-'));
  root = join(work, 'dataroot');
  gen = await generateDataroot(root, { count: 300, large: [3 * MiB + 17, 2 * MiB] });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Run {
  results: (AddResult & { path: string })[];
  others: Listed[];
  stats: PackWriter['stats'];
}

/** What backup will do for a dataroot: list, skip what the store holds, pack the rest. */
async function backupOnce(backend: Backend, enc: StoreEncoding): Promise<Run> {
  const index = await loadIndex(backend, enc);
  const writer = new PackWriter({
    backend,
    index,
    encoding: enc,
    spoolDir: join(work, 'spool'),
    packSize: PACK_SIZE,
  });
  const run: Run = { results: [], others: [], stats: writer.stats };
  for await (const e of listBlobs(root)) {
    if (e.kind === 'other') run.others.push(e);
    else run.results.push({ ...(await writer.add(root, e)), path: e.path });
  }
  await writer.finish();
  return run;
}

/** What restore will do: every pack that holds one of the snapshot's blobs, each blob to its paths. */
async function restoreInto(backend: Backend, enc: StoreEncoding, snapshot: Run, dir: string): Promise<void> {
  const index = await loadIndex(backend, enc);
  const paths = new Map<string, string[]>();
  for (const r of snapshot.results) paths.set(r.sha1, [...(paths.get(r.sha1) ?? []), r.path]);
  const packs = new Set<string>();
  for (const sha1 of paths.keys()) {
    const at = index.lookup(Buffer.from(sha1, 'hex'));
    expect(at, `blob ${sha1} is indexed`).toBeDefined();
    if (at) packs.add(at.packId);
  }
  for (const id of packs) {
    const pack = index.pack(id);
    if (!pack) throw new Error(`pack ${id} not indexed`);
    await extractPack({ backend, encoding: enc, pack, dir, placeAt: (h) => paths.get(h) ?? [] });
  }
}

async function roundTrip(backend: Backend, enc: StoreEncoding) {
  const first = await backupOnce(backend, enc);
  // The corrupted files are reported, under the hash of what they hold.
  const mismatches = first.results.filter((r) => r.status === 'mismatch');
  expect(new Map(mismatches.map((r) => [r.path, r.status === 'mismatch' ? r.claimed : '']))).toEqual(
    gen.mismatched,
  );
  for (const r of mismatches) expect(r.sha1).toBe(gen.files.get(r.path));
  expect(first.others.map((o) => o.path).sort()).toEqual([...gen.others].sort());
  expect(first.results.length).toBe(gen.files.size);
  // 305 files, one content twice: every distinct content stored once.
  expect(first.stats.blobs).toBe(new Set(gen.files.values()).size);
  expect(first.stats.packs).toBeGreaterThanOrEqual(4);

  // Packs are cut at the pack size; a file at least that large is a pack of its own.
  const index = await loadIndex(backend, enc);
  const perPack = new Map<string, { blobs: number; bytes: number; large: boolean }>();
  for (const e of index.entries()) {
    const p = perPack.get(e.packId) ?? { blobs: 0, bytes: 0, large: false };
    perPack.set(e.packId, {
      blobs: p.blobs + 1,
      bytes: p.bytes + e.size,
      large: p.large || e.size >= PACK_SIZE,
    });
  }
  expect([...perPack.values()].filter((p) => p.large).map((p) => p.blobs)).toEqual([1, 1, 1]);
  for (const p of perPack.values()) if (!p.large) expect(p.bytes).toBeLessThan(PACK_SIZE + 512 * 1024);

  const out = join(work, `restored-${Math.random().toString(36).slice(2)}`);
  await restoreInto(backend, enc, first, out);
  expect(await treeHashes(out)).toEqual(gen.files);

  // Nothing changed: nothing new is stored; only the files whose name lies are read again.
  const second = await backupOnce(backend, enc);
  expect(second.stats.packs).toBe(0);
  expect(second.stats.blobs).toBe(0);
  expect(
    second.results
      .filter((r) => r.status !== 'known')
      .map((r) => r.path)
      .sort(),
  ).toEqual([...gen.mismatched.keys()].sort());
  return first;
}

describe('blob store round trip', () => {
  it('local backend: backup, index reload, restore byte for byte, no-op second run', async () => {
    const dir = join(work, 'target-local');
    const backend = new LocalBackend(dir);
    await roundTrip(backend, zstd);

    // By hand, as docs/format.md says: every pack through `zstd -dc | tar -x` gives each blob at its name.
    const byHand = join(work, 'by-hand');
    execFileSync('mkdir', ['-p', byHand]);
    const packs = (await backend.list(PACKS_PREFIX)).map((o) => join(dir, o.key));
    for (const p of packs) execFileSync('sh', ['-c', 'zstd -dc "$1" | tar -x -C "$2"', 'sh', p, byHand]);
    const expected = new Map([...new Set(gen.files.values())].map((h) => [blobPath(h), h]));
    expect(await treeHashes(byHand)).toEqual(expected);
  });

  it('S3 backend (s3rver): the same round trip', async () => {
    const backend = new S3Backend(testS3Target(await createTestBucket('store'), 'site'));
    try {
      await roundTrip(backend, zstd);
    } finally {
      await backend.close();
    }
  });

  it('encrypted with age: packs and index files are ciphertext; no key, no restore', async () => {
    const identity = await generateIdentity();
    const plan = await encryptionPlan({ recipients: [await identityToRecipient(identity)], identities: [] });
    if (!plan) throw new Error('no plan');
    const { decryptStage } = await import('../../src/archive/encryption.js');
    const enc: StoreEncoding = {
      codec: getCodec('zstd'),
      encrypt: plan.stage,
      decrypt: () => {
        const d = decryptStage({ snapshot: 'store', volume: 'store', file: 'pack' }, plan.manifest, {
          recipients: [],
          identities: [identity],
        });
        if (!d) throw new Error('no stage');
        return d;
      },
    };
    const dir = join(work, 'target-age');
    const backend = new LocalBackend(dir);
    const first = await roundTrip(backend, enc);
    for (const o of await backend.list('store/')) {
      const head = (await readFile(join(dir, o.key))).subarray(0, 21).toString();
      expect(head).toBe('age-encryption.org/v1');
    }
    const err = await restoreInto(backend, zstd, first, join(work, 'nokey')).catch((e: unknown) => e);
    expect(isSidecarError(err, 'DECRYPTION_FAILED')).toBe(true);
  });

  it('a damaged pack is INTEGRITY_FAILED and leaves no file under a blob name', async () => {
    const dir = join(work, 'target-damaged');
    const backend = new LocalBackend(dir);
    await backupOnce(backend, zstd);
    const index = await loadIndex(backend, zstd);
    const [key] = (await backend.list(PACKS_PREFIX)).map((o) => o.key);
    if (!key) throw new Error('no pack');
    const bytes = await readFile(join(dir, key));
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = (bytes[mid] ?? 0) ^ 0x55;
    await writeFile(join(dir, key), bytes);
    const pack = index.pack(key.slice(key.lastIndexOf('/') + 1));
    if (!pack) throw new Error('pack not indexed');
    const out = join(work, 'damaged-out');
    const err = await extractPack({ backend, encoding: zstd, pack, dir: out }).catch((e: unknown) => e);
    expect(isSidecarError(err, 'INTEGRITY_FAILED')).toBe(true);
    // Whatever was written before the damage was checked blob by blob: no name holds other content.
    const written = await treeHashes(out).catch(() => new Map<string, string>());
    for (const [path, h] of written) expect(path.endsWith(h)).toBe(true);
    // The damage may come before the first blob: then not even the directory was made.
    const left = await readdir(out, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [];
      throw e;
    });
    expect(left.filter((n) => String(n).endsWith('.tmp'))).toEqual([]);
  });
});
