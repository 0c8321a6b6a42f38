// Run by test/unit/store/frames.test.ts under the product's Node (zstd in zlib): FrameCompressor over inputs
// of sizes given as arguments, fed in 64 KiB chunks as tar's pipe gives them; prints what each frame holds.
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

const { FileFrames, FrameCompressor } = await import(
  new URL('../../dist/store/frames.js', import.meta.url).href
);
const work = await mkdtemp(join(tmpdir(), 'frames-check-'));
const results = [];
for (const size of process.argv.slice(2).map(Number)) {
  // Half random, half text: frames of both kinds.
  const input = Buffer.concat([
    randomBytes(size >> 1),
    Buffer.from('moodle '.repeat(size).slice(0, size - (size >> 1))),
  ]);
  const f = new FrameCompressor(3);
  const out = [];
  const chunks = function* () {
    for (let i = 0; i < input.length; i += 65536) yield input.subarray(i, i + 65536);
  };
  await pipeline(
    Readable.from(chunks()),
    f,
    new Writable({
      write(c, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  const all = Buffer.concat(out);
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
  const fromFile = [];
  await pipeline(
    ff,
    new Writable({
      write(c, _e, cb) {
        fromFile.push(c);
        cb();
      },
    }),
  );
  await fh.close();
  const sameFromFile = Buffer.concat(fromFile).equals(all) && ff.table().lengths.join() === t.lengths.join();
  results.push({
    size,
    frames: t.lengths.length,
    frameBytes: t.frameBytes,
    lengthsAddUp: at === all.length,
    whole,
    sameFromFile,
  });
}
await rm(work, { recursive: true, force: true });
console.log(JSON.stringify(results));
