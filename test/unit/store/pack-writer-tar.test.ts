import { createHash, randomBytes } from 'node:crypto';
import {
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getCodec } from '../../../src/archive/codec.js';
import { LocalBackend } from '../../../src/storage/local.js';
import { type ListedBlob, listBlobs } from '../../../src/store/listing.js';
import { extractPack } from '../../../src/store/pack-reader.js';
import { untarPack } from '../../../src/store/pack-untar.js';
import { type AddResult, PackWriter } from '../../../src/store/pack-writer.js';
import { loadIndex } from '../../../src/store/store-io.js';
import { TarSplitter } from '../../../src/store/tar-feed.js';

function must<T>(x: T | undefined): T {
  if (x === undefined) throw new Error('missing');
  return x;
}

const encoding = { codec: getCodec('zstd'), level: 3 };
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mbs-packtar-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function blob(root: string, content: Buffer, area = 'filedir', name?: string): string {
  const h = name ?? createHash('sha1').update(content).digest('hex');
  const d = join(root, area, h.slice(0, 2), h.slice(2, 4));
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, h), content);
  return h;
}

async function listed(root: string): Promise<ListedBlob[]> {
  const out: ListedBlob[] = [];
  for await (const l of listBlobs(root)) if (l.kind === 'blob') out.push(l);
  return out;
}

async function* from<T>(items: T[], before?: (i: number) => void): AsyncGenerator<T> {
  for (const [i, x] of items.entries()) {
    before?.(i);
    yield x;
  }
}

async function run(root: string, items: AsyncIterable<ListedBlob>, packSize = 64 * 1024) {
  const backend = new LocalBackend(join(dir, 'target'));
  const index = await loadIndex(backend, encoding, {});
  const w = new PackWriter({
    backend,
    index,
    encoding,
    spoolDir: join(dir, 'spool'),
    packSize,
    groupSize: packSize,
    background: true,
  });
  const results = new Map<string, AddResult>();
  let inFlight = 0;
  let overlapped = false;
  await w.addAll(root, items, async (l, r) => {
    if (inFlight++ > 0) overlapped = true;
    await new Promise((res) => setImmediate(res));
    inFlight--;
    results.set(l.path, r);
  });
  await w.finish();
  const reloaded = await loadIndex(backend, encoding, {});
  return { w, results, overlapped, reloaded, backend };
}

describe('PackWriter.addAll through GNU tar', () => {
  it('stores two blob paths of one file (hard links, one under a wrong name) each whole, not as a link', async () => {
    const root = join(dir, 'data');
    const content = randomBytes(3000);
    const right = blob(root, content);
    const wrong = createHash('sha1').update('another content').digest('hex');
    mkdirSync(join(root, 'filedir', wrong.slice(0, 2), wrong.slice(2, 4)), { recursive: true });
    linkSync(
      join(root, 'filedir', right.slice(0, 2), right.slice(2, 4), right),
      join(root, 'filedir', wrong.slice(0, 2), wrong.slice(2, 4), wrong),
    );
    const items = await listed(root);
    expect(items.map((l) => l.nlink)).toEqual([2, 2]);
    const { results, reloaded } = await run(root, from(items));
    const byName = new Map([...results].map(([path, r]) => [path.slice(-40), r]));
    expect(byName.get(right)).toMatchObject({ status: 'added', sha1: right });
    // The second name's content is the first's: found in the store under its real SHA-1.
    expect(byName.get(wrong)).toMatchObject({ status: 'mismatch', claimed: wrong, actual: right });
    expect(reloaded.size).toBe(1);
  });
  it('stores every new file once, byte for byte, across several packs and the background uploads', async () => {
    const root = join(dir, 'data');
    const contents = Array.from({ length: 300 }, (_, i) => randomBytes(100 + ((i * 997) % 5000)));
    contents.push(randomBytes(200 * 1024)); // larger than a pack: a pack of its own
    const names = contents.map((c, i) => blob(root, c, i % 50 === 0 ? 'trashdir' : 'filedir'));
    const { w, results, overlapped, reloaded, backend } = await run(root, from(await listed(root)));
    expect(overlapped).toBe(false);
    expect([...results.values()].every((r) => r.status === 'added')).toBe(true);
    expect(results.size).toBe(contents.length);
    expect(w.stats.packs).toBeGreaterThan(5);
    expect(reloaded.size).toBe(contents.length);
    // Every blob reads back from the pack the reloaded index names, with its content.
    for (const [i, name] of names.entries()) {
      const at = reloaded.lookup(Buffer.from(name, 'hex'));
      expect(at, name).toBeDefined();
      const out = join(dir, 'out', name);
      await extractPack({
        backend,
        encoding,
        pack: must(reloaded.pack(must(at).packId)),
        dir: out,
        placeAt: (h) => (h === name ? ['f'] : []),
      });
      expect(readFileSync(join(out, 'f')).equals(must(contents[i]))).toBe(true);
    }
  });

  it('a file deleted after the listing is vanished, a corrupt one is stored under its real hash, a symlink fails', async () => {
    const root = join(dir, 'data');
    const keep = blob(root, Buffer.from('keep me'));
    const gone = blob(root, Buffer.from('deleted meanwhile'));
    const bad = blob(root, Buffer.from('not what the name says'), 'filedir', 'ab'.repeat(20));
    const items = await listed(root);
    const goneItem = must(items.find((l) => l.sha1 === gone));
    const { results } = await run(
      root,
      from(items, (i) => {
        if (items[i] === goneItem) unlinkSync(join(root, goneItem.path));
      }),
    );
    expect(results.get(goneItem.path)?.status).toBe('vanished');
    expect(results.get(must(items.find((l) => l.sha1 === keep)).path)?.status).toBe('added');
    const r = results.get(must(items.find((l) => l.sha1 === bad)).path);
    expect(r).toMatchObject({
      status: 'mismatch',
      claimed: bad,
      actual: createHash('sha1').update('not what the name says').digest('hex'),
      stored: true,
    });

    const root2 = join(dir, 'data2');
    const target = blob(root2, Buffer.from('target'));
    const items2 = await listed(root2);
    unlinkSync(join(root2, must(items2[0]).path));
    symlinkSync('/etc/passwd', join(root2, must(items2[0]).path));
    await expect(run(root2, from(items2))).rejects.toThrow(/no longer a regular file/);
    expect(target).toHaveLength(40);
  });

  it('two groups packed at once: twins in trashdir/ settle once, corrupt files in both groups relay in turn', async () => {
    const root = join(dir, 'data');
    const contents = Array.from({ length: 120 }, (_, i) => randomBytes(2000 + ((i * 131) % 3000)));
    const names = contents.map((c) => blob(root, c));
    // A twin of every 10th content in trashdir/, and a corrupt file early and late (two groups' relays).
    for (let i = 0; i < contents.length; i += 10) blob(root, must(contents[i]), 'trashdir');
    const badA = blob(root, Buffer.from('corrupt A'), 'filedir', '0a'.repeat(20));
    const badB = blob(root, Buffer.from('corrupt B'), 'filedir', 'fb'.repeat(20));
    blob(root, Buffer.from('corrupt A'), 'trashdir', badA); // a twin of a file its group relays
    // Each twin right after its first copy, so it comes while that copy's group is still being packed;
    // the corrupt files sort into different groups.
    const all = await listed(root);
    const twins = all.filter((l) => l.path.startsWith('trashdir/'));
    const items = all
      .filter((l) => !l.path.startsWith('trashdir/'))
      .flatMap((l) => [l, ...twins.filter((t) => t.sha1 === l.sha1)]);
    expect(items).toHaveLength(all.length);
    const { results, reloaded, backend } = await run(root, from(items), 16 * 1024);
    expect(results.size).toBe(items.length);
    for (const l of items) {
      const r = must(results.get(l.path));
      if (l.sha1 === badA || l.sha1 === badB) expect(r.status).toBe('mismatch');
      else expect(['added', 'known']).toContain(r.status);
    }
    const real = (s: string) => createHash('sha1').update(s).digest('hex');
    expect(reloaded.size).toBe(contents.length + 2);
    for (const h of [...names, real('corrupt A'), real('corrupt B')]) {
      const at = must(reloaded.lookup(Buffer.from(h, 'hex')));
      const out = join(dir, 'out', h);
      await extractPack({
        backend,
        encoding,
        pack: must(reloaded.pack(at.packId)),
        dir: out,
        placeAt: (x) => (x === h ? ['f'] : []),
      });
      expect(
        createHash('sha1')
          .update(readFileSync(join(out, 'f')))
          .digest('hex'),
      ).toBe(h);
    }
  });
});

describe('untarPack', () => {
  it('unpacks the named blobs of a pack with their metadata, and refuses a damaged pack or a blob it lacks', async () => {
    const root = join(dir, 'data');
    const contents = Array.from({ length: 40 }, (_, i) => randomBytes(50 + i * 300));
    const names = contents.map((c) => blob(root, c));
    const { reloaded, backend } = await run(root, from(await listed(root)), 1 << 30);
    expect(reloaded.packCount).toBe(1);
    const pack = must(reloaded.pack(must(reloaded.lookup(Buffer.from(must(names[0]), 'hex'))).packId));
    const wanted = names.slice(0, 10);
    const out = join(dir, 'out');
    mkdirSync(out);
    const members = await untarPack({ backend, encoding, pack, sha1s: wanted, dir: out });
    expect([...members.keys()].sort()).toEqual([...wanted].sort());
    for (const [i, name] of wanted.entries()) {
      expect(readFileSync(join(out, name)).equals(must(contents[i]))).toBe(true);
      expect(must(members.get(name)).size).toBe(must(contents[i]).length);
    }
    // Only the named blobs were written.
    expect(readdirSync(out).filter((f) => f.length === 40)).toHaveLength(10);

    const other = join(dir, 'out2');
    mkdirSync(other);
    await expect(
      untarPack({ backend, encoding, pack, sha1s: ['0'.repeat(40)], dir: other }),
    ).rejects.toMatchObject({ code: 'INTEGRITY_FAILED' });

    const file = join(dir, 'target', 'store', 'packs', pack.id.slice(0, 2), pack.id);
    const bytes = readFileSync(file);
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0xff;
    writeFileSync(file, bytes);
    const third = join(dir, 'out3');
    mkdirSync(third);
    await expect(untarPack({ backend, encoding, pack, sha1s: wanted, dir: third })).rejects.toMatchObject({
      code: 'INTEGRITY_FAILED',
    });
  });
});

describe('TarSplitter', () => {
  it('splits a stream cut at every byte boundary the same way', async () => {
    const { execFileSync } = await import('node:child_process');
    const root = join(dir, 'data');
    mkdirSync(root);
    writeFileSync(join(root, 'a'), 'x'.repeat(700));
    writeFileSync(join(root, 'b'), '');
    writeFileSync(join(root, 'c'), randomBytes(1536));
    const tar = execFileSync('tar', ['-c', '-f', '-', '-C', root, 'a', 'b', 'c']);
    for (const step of [1, 7, 511, 512, 513, 4096, tar.length]) {
      const s = new TarSplitter(1 << 20);
      const files = [];
      for (let at = 0; at < tar.length; at += step) files.push(...s.push(tar.subarray(at, at + step)));
      expect(s.done).toBe(true);
      expect(files.map((f) => [f.path, f.size, Buffer.concat(f.data ?? []).length])).toEqual([
        ['a', 700, 700],
        ['b', 0, 0],
        ['c', 1536, 1536],
      ]);
      expect(must(files[0]).sha1).toBe(createHash('sha1').update('x'.repeat(700)).digest('hex'));
    }
  });
});
