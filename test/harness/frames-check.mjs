// Run by test/unit/store/frames.test.ts under the product's Node (zstd in zlib): FrameCompressor over inputs
// of sizes given as arguments, fed in 64 KiB chunks as tar's pipe gives them; prints what each frame holds.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

const { FileFrames, FrameCompressor } = await import(
  new URL('../../dist/store/frames.js', import.meta.url).href
);
const work = await mkdtemp(join(tmpdir(), 'frames-check-'));

/** What a pipeline of `streams` puts out, as one buffer. */
async function collect(...streams) {
  const out = [];
  const sink = new Writable({
    write(c, _e, cb) {
      out.push(c);
      cb();
    },
  });
  await pipeline(...streams, sink);
  return Buffer.concat(out);
}
const results = [];
for (const size of process.argv.slice(2).map(Number)) {
  // Half random, half text: frames of both kinds.
  const input = Buffer.concat([
    randomBytes(size >> 1),
    Buffer.from('moodle '.repeat(size).slice(0, size - (size >> 1))),
  ]);
  const f = new FrameCompressor(3);
  const chunks = function* () {
    for (let i = 0; i < input.length; i += 65536) yield input.subarray(i, i + 65536);
  };
  const all = await collect(Readable.from(chunks()), f);
  const t = f.table();
  let at = 0;
  let whole = true;
  for (let k = 0; k < t.lengths.length; k++) {
    const frame = all.subarray(at, at + t.lengths[k]);
    at += t.lengths[k];
    const want = input.subarray(k * t.frameBytes, Math.min(input.length, (k + 1) * t.frameBytes));
    if (!zlib.zstdDecompressSync(frame).equals(want)) whole = false;
  }
  // The same tar from a file (FileFrames, as a backup's groups are framed): the same bytes, the same table.
  const file = join(work, `in-${size}`);
  await writeFile(file, input);
  const fh = await open(file, 'r');
  const ff = new FileFrames(fh, 3);
  const fromFile = await collect(ff);
  await fh.close();
  const sameFromFile = fromFile.equals(all) && ff.table().lengths.join() === t.lengths.join();
  results.push({
    size,
    frames: t.lengths.length,
    frameBytes: t.frameBytes,
    lengthsAddUp: at === all.length,
    whole,
    sameFromFile,
  });
}
// fetchFrames against a storage that answers a range (what S3 does) and one that ignores it (sends it all).
const { fetchFrames } = await import(new URL('../../dist/store/pack-frames.js', import.meta.url).href);
const input = Buffer.concat([randomBytes(2 << 20), Buffer.from('moodle '.repeat(200000))]);
const f = new FrameCompressor(3);
const packed = await collect(Readable.from([input]), f);
const table = f.table();
const pack = {
  id: 'f'.repeat(64),
  storedSize: packed.length,
  codec: 'zstd',
  encrypted: false,
  frames: table,
};
// A blob across frames 1 and 2, as a tar entry would lie.
const offset = (1 << 20) + 1000;
const size = (1 << 20) + 5000;
const blob = input.subarray(offset, offset + size);
const sha1 = createHash('sha1').update(blob).digest('hex');
const start = table.lengths[0];
const end = start + table.lengths[1] + table.lengths[2];
/** The blob out of `stored` by fetchFrames: what it read, or the error's code. */
const fetchWith = async (stored, p, encoding, honours = true) => {
  const dest = join(work, `blob-${randomBytes(4).toString('hex')}`);
  const backend = {
    location: 'test',
    getRange: async (_key, a, b) => Readable.from([honours ? stored.subarray(a, b) : stored]),
  };
  try {
    const r = await fetchFrames({
      backend,
      pack: p,
      runs: [{ first: 1, last: 2, start, end }],
      blobs: [{ sha1, offset, size, dest }],
      encoding,
    });
    return { ok: (await readFile(dest)).equals(blob), bytesRead: r.bytesRead };
  } catch (err) {
    return { code: err.code, message: err.message };
  }
};
const plainRead = await fetchWith(packed, pack, {});
// The same pack age-encrypted as the store writes it: the frames' age chunks are read and opened alone.
const { Encrypter, generateIdentity, identityToRecipient } = await import('age-encryption');
const { storeFileKey } = await import(new URL('../../dist/archive/encryption.js', import.meta.url).href);
const identity = await generateIdentity();
const e = new Encrypter();
e.addRecipient(await identityToRecipient(identity));
const sealed = Buffer.from(await e.encrypt(packed));
const agePack = { ...pack, storedSize: sealed.length, encrypted: true };
const key = { fileKey: storeFileKey({ recipients: [], identities: [identity] }, 'store') };
const ageRead = await fetchWith(sealed, agePack, key);
// One bit flipped inside frame 1 (the blob's first frame): where its plaintext byte lies in age's chunks.
const { ageHeaderEnd } = await import(new URL('../../dist/archive/age-stream.js', import.meta.url).href);
const flipped = Buffer.from(sealed);
const at = start + 1000;
flipped[ageHeaderEnd(sealed) + 16 + Math.floor(at / 65536) * (65536 + 16) + (at % 65536)] ^= 1;
const stranger = {
  fileKey: storeFileKey({ recipients: [], identities: [await generateIdentity()] }, 'store'),
};
const ranged = {
  honoured: { ok: plainRead.ok, bytesRead: plainRead.bytesRead === end - start },
  ignored: await fetchWith(packed, pack, {}, false),
  age: {
    ok: ageRead.ok,
    // The header's read, then the age chunks of the frames: a little more than the frames, far less than all.
    bytesRead: ageRead.bytesRead > end - start && ageRead.bytesRead < end - start + 200_000,
    whole: sealed.length,
  },
  ageDamaged: (await fetchWith(flipped, agePack, key)).code,
  ageStranger: (await fetchWith(sealed, agePack, stranger)).code,
};
await rm(work, { recursive: true, force: true });
console.log(JSON.stringify({ results, ranged }));
