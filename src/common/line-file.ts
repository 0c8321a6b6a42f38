import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';

/** Text and bytes as one chunk to write: strings joined; one piece alone as it is, without a copy. */
export function joinChunks(batch: readonly (string | Buffer)[]): string | Buffer {
  if (batch.length === 1) return batch[0] as string | Buffer;
  if (batch.every((c) => typeof c === 'string')) return batch.join('');
  return Buffer.concat(batch.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
}

/** A local text file written line by line with back-pressure, in batches (a million lines are ~60 MB). */
export class LineFile {
  private readonly out: WriteStream;
  private readonly closed: Promise<unknown>;
  private batch: (string | Buffer)[] = [];
  private pending = 0;

  /** `append`: after what the file holds (a copy made first), instead of emptying it. */
  constructor(path: string, o: { append?: boolean } = {}) {
    this.out = createWriteStream(path, { mode: 0o600, flags: o.append ? 'a' : 'w' });
    this.closed = once(this.out, 'close');
    this.closed.catch(() => undefined);
  }

  /** A line, or many at once (a chunk of text or its bytes): written once 1,024 of them or 1 MB are waiting. */
  async add(text: string | Buffer): Promise<void> {
    this.batch.push(text);
    this.pending += text.length;
    if (this.batch.length >= 1024 || this.pending >= 1 << 20) await this.flush();
  }

  async finish(): Promise<void> {
    await this.flush();
    this.out.end();
    await this.closed;
  }

  abort(): void {
    this.out.destroy();
  }

  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const chunk = joinChunks(this.batch);
    this.batch = [];
    this.pending = 0;
    // events.once rejects on 'error' too (a second once('error') would stay registered after each drain).
    if (!this.out.write(chunk)) await once(this.out, 'drain');
  }
}
