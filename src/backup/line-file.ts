import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';

/** A local text file written line by line with back-pressure, in batches (a million lines are ~60 MB). */
export class LineFile {
  private readonly out: WriteStream;
  private readonly closed: Promise<unknown>;
  private batch: string[] = [];

  constructor(path: string) {
    this.out = createWriteStream(path, { mode: 0o600 });
    this.closed = once(this.out, 'close');
    this.closed.catch(() => undefined);
  }

  async add(line: string): Promise<void> {
    this.batch.push(line);
    if (this.batch.length >= 1024) await this.flush();
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
    const chunk = this.batch.join('');
    this.batch = [];
    if (!this.out.write(chunk)) await Promise.race([once(this.out, 'drain'), once(this.out, 'error')]);
  }
}
