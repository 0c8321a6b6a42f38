import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** What `stages` put out for `parts` fed in, as one buffer; a stage's error rejects. */
export async function piped(
  parts: Iterable<Buffer> | AsyncIterable<Buffer>,
  ...stages: NodeJS.ReadWriteStream[]
): Promise<Buffer> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      out.push(c);
      cb();
    },
  });
  await pipeline([Readable.from(parts), ...stages, sink]);
  return Buffer.concat(out);
}
