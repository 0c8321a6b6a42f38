import type { Readable } from 'node:stream';
import type { S3Target } from '../config/types.js';
import type { Backend, ObjectInfo, PutOptions } from './backend.js';

type Loaded = Required<Pick<Backend, 'putFile' | 'copy' | 'getRange'>> & Backend & { close(): Promise<void> };

/**
 * The S3 backend, loaded on first use: the AWS SDK costs ~20 MB of resident memory at import, which a run
 * against a local target should not carry (the sidecar's memory budget is 150 MB for any volume size).
 */
export class LazyS3Backend implements Backend {
  readonly location: string;
  private inner: Promise<Loaded> | undefined;

  constructor(private readonly target: S3Target) {
    const prefix = target.prefix.replace(/^\/+|\/+$/g, '');
    this.location = `s3://${target.bucket}${prefix ? `/${prefix}` : ''}`;
  }

  private load(): Promise<Loaded> {
    this.inner ??= import('./s3.js').then((m) => new m.S3Backend(this.target));
    return this.inner;
  }

  async put(key: string, body: Readable, opts?: PutOptions): Promise<{ size: number }> {
    return (await this.load()).put(key, body, opts);
  }
  async putFile(
    key: string,
    path: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }> {
    return (await this.load()).putFile(key, path, opts);
  }
  async copy(
    from: string,
    to: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }> {
    return (await this.load()).copy(from, to, opts);
  }
  async get(key: string): Promise<Readable> {
    return (await this.load()).get(key);
  }

  async getRange(key: string, start: number, end: number): Promise<Readable> {
    return (await this.load()).getRange(key, start, end);
  }
  async stat(key: string): Promise<ObjectInfo | null> {
    return (await this.load()).stat(key);
  }
  async list(prefix: string): Promise<ObjectInfo[]> {
    return (await this.load()).list(prefix);
  }
  async delete(key: string): Promise<void> {
    return (await this.load()).delete(key);
  }
  async close(): Promise<void> {
    if (this.inner) await (await this.inner).close();
  }
}
