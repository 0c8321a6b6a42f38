import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { SidecarError } from '../common/errors.js';
import type { S3Target } from '../config/types.js';
import {
  type Backend,
  checkRange,
  type MultipartRecord,
  type ObjectInfo,
  type PutOptions,
} from './backend.js';
import { ByteCounter } from './length-check.js';
import { virtualHostHint } from './s3-addressing.js';
import { s3ClientConfig } from './s3-config.js';
import { COPY_OBJECT_MAX, copyInBucket } from './s3-copy.js';
import { FileUploadError, signRangeBodies, uploadFile } from './s3-file-upload.js';
import { abortUpload, MultipartTracker } from './s3-multipart.js';

export { s3ClientConfig } from './s3-config.js';

/** 1000 keys a page: enough for 10 million objects; a server that pages forever is a bug, not an archive. */
const MAX_LIST_PAGES = 10_000;

/** The fields of an SDK service error we read; anything thrown may lack them. */
interface ServiceErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function shape(err: unknown): ServiceErrorShape {
  return typeof err === 'object' && err !== null ? (err as ServiceErrorShape) : { message: String(err) };
}

function errorCode(err: unknown): string {
  const e = shape(err);
  return e.Code ?? e.code ?? e.name ?? 'Error';
}

function isNotFound(err: unknown): boolean {
  const e = shape(err);
  const code = errorCode(err);
  // NoSuchBucket is also a 404, but it means the configuration is wrong, not that the object is absent.
  if (code === 'NoSuchBucket') return false;
  return code === 'NoSuchKey' || code === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

/** What the user can do about the common permanent failures. */
function hintFor(code: string | undefined): string | undefined {
  if (code === 'NoSuchBucket') return 'check the bucket name, region and endpoint of the S3 target';
  if (code && ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden'].includes(code)) {
    return 'check the S3 credentials and that they may read, write, list and delete under the prefix';
  }
  return undefined;
}

/**
 * Backend on an S3 bucket (AWS, MinIO, Garage, Ceph…). Keys live under `prefix/`; a put streams through a
 * multipart upload that is aborted on failure, so an object appears only complete (S3 makes it visible on
 * CompleteMultipartUpload, never before). putFile (spooled archives) streams each part from the file.
 */
export class S3Backend implements Backend {
  readonly location: string;
  /** The SDK client, e.g. for tests that watch requests. Owned by this backend: close() destroys it. */
  readonly client: S3Client;
  private readonly bucket: string;
  /** Key prefix including its trailing '/', or '' for the bucket root. */
  private readonly root: string;
  private readonly multipart: MultipartTracker;

  constructor(private readonly target: S3Target) {
    this.bucket = target.bucket;
    const prefix = target.prefix.replace(/^\/+|\/+$/g, '');
    this.root = prefix ? `${prefix}/` : '';
    this.location = `s3://${target.bucket}${prefix ? `/${prefix}` : ''}`;
    this.client = new S3Client(s3ClientConfig(target));
    this.multipart = new MultipartTracker(this.client, target.endpoint ?? '');
    signRangeBodies(this.client);
  }

  async put(key: string, body: Readable, opts: PutOptions = {}): Promise<{ size: number }> {
    const counter = new ByteCounter(opts.contentLength);
    let Key: string;
    let upload: Upload;
    try {
      Key = this.objectKey(key);
      // ContentLength is not passed on: the counter checks it, and a wrong value would corrupt the request.
      upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: counter },
        partSize: this.target.partSize,
        queueSize: this.target.queueSize,
        leavePartsOnError: false,
      });
    } catch (err) {
      body.destroy(); // a put owns its body, also when it fails early (bad key, part size below 5 MiB)
      throw this.wrap('put', key, err);
    }
    // Which side broke first decides what the user is told. Registered before pipeline's own listener, so
    // when the source fails first the counter is still intact; when the upload fails first, lib-storage
    // destroys the counter and the source's later (Abort) error is only the consequence.
    let sourceErr: unknown;
    body.on('error', (e: unknown) => {
      if (!counter.destroyed) sourceErr ??= e;
    });
    const piping = pipeline(body, counter).then(
      () => undefined,
      (err: unknown) => err,
    );
    const unwatch = this.multipart.watch(Key, opts.uploads);
    try {
      await upload.done();
    } catch (err) {
      counter.destroy(); // stop reading the source, else the pipeline waits for a reader forever
      await piping;
      const orphan = await this.confirmAborted(Key, upload.uploadId);
      if (!orphan) await this.ended(opts, upload.uploadId);
      throw this.wrap('put', key, sourceErr ?? counter.failure ?? err, orphan);
    } finally {
      unwatch();
    }
    await this.ended(opts, upload.uploadId);
    const piped = await piping;
    if (piped) throw this.wrap('put', key, piped);
    return { size: counter.bytes };
  }

  async putFile(
    key: string,
    path: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }> {
    const Key = this.objectKey(key);
    const unwatch = this.multipart.watch(Key, opts.uploads);
    try {
      const r = await uploadFile({
        client: this.client,
        bucket: this.bucket,
        key: Key,
        path,
        size: opts.contentLength,
        partSize: this.target.partSize,
        queueSize: this.target.queueSize,
      });
      await this.ended(opts, r.uploadId);
      return { size: r.size };
    } catch (err) {
      if (!(err instanceof FileUploadError)) throw this.wrap('put', key, err);
      if (!err.note) await this.ended(opts, err.uploadId);
      throw this.wrap('put', key, err.cause, err.note);
    } finally {
      unwatch();
    }
  }

  /** CopyObject up to 5 GiB; a larger object goes through this process (get, then a multipart put). */
  async copy(
    from: string,
    to: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }> {
    if (opts.contentLength > COPY_OBJECT_MAX) return this.put(to, await this.get(from), opts);
    try {
      await copyInBucket(this.client, this.bucket, this.objectKey(from), this.objectKey(to));
    } catch (err) {
      throw this.wrap('copy', from, err);
    }
    return { size: opts.contentLength };
  }

  async get(key: string): Promise<Readable> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      if (!(res.Body instanceof Readable)) throw new Error('response body is not a Node.js stream');
      return res.Body;
    } catch (err) {
      throw this.wrap('get', key, err);
    }
  }

  async getRange(key: string, start: number, end: number): Promise<Readable> {
    checkRange(start, end);
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          Range: `bytes=${start}-${end - 1}`,
        }),
      );
      if (!(res.Body instanceof Readable)) throw new Error('response body is not a Node.js stream');
      // A server that ignores Range answers with the whole object: refused before a byte of it is taken.
      if (res.ContentLength !== undefined && res.ContentLength !== end - start) {
        res.Body.destroy();
        throw new SidecarError(
          'STORAGE_FAILED',
          `${this.location} answered a read of bytes ${start}–${end} of ${key} with ${res.ContentLength} bytes`,
          'the S3 server ignores HTTP Range requests, which reading part of a pack needs; the object is not damaged',
        );
      }
      return res.Body;
    } catch (err) {
      if (err instanceof SidecarError) throw err;
      throw this.wrap('get', key, err);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const res = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      return { key, size: res.ContentLength ?? 0, modified: res.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.wrap('stat', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    for (let page = 0; ; page++) {
      if (page >= MAX_LIST_PAGES) {
        throw new SidecarError(
          'STORAGE_FAILED',
          `list ${this.location}/${prefix}: more than ${MAX_LIST_PAGES} pages`,
        );
      }
      let res: ListObjectsV2CommandOutput;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.root + prefix,
            ContinuationToken: token,
          }),
        );
      } catch (err) {
        throw this.wrap('list', prefix, err);
      }
      for (const obj of res.Contents ?? []) {
        // Keys ending in '/' are folder markers made by consoles, not objects.
        if (!obj.Key?.startsWith(this.root) || obj.Key.endsWith('/')) continue;
        out.push({
          key: obj.Key.slice(this.root.length),
          size: obj.Size ?? 0,
          modified: obj.LastModified ?? new Date(0),
        });
      }
      if (!res.IsTruncated) break;
      if (!res.NextContinuationToken || res.NextContinuationToken === token) {
        throw new SidecarError(
          'STORAGE_FAILED',
          `list ${this.location}/${prefix}: server returned a bad continuation token`,
        );
      }
      token = res.NextContinuationToken;
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      if (!isNotFound(err)) throw this.wrap('delete', key, err);
    }
  }

  /** Aborts a multipart upload another run recorded (recovery); undefined when it is gone, else a note. */
  abortRecorded(u: MultipartRecord): Promise<string | undefined> {
    return abortUpload(this.client, u);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    if (key === '' || key.startsWith('/')) {
      throw new SidecarError(
        'STORAGE_FAILED',
        `refusing storage key ${JSON.stringify(key)} in ${this.location}`,
      );
    }
    return this.root + key;
  }

  /**
   * lib-storage already aborted the multipart upload, unless the abort itself failed. Asking again tells:
   * NoSuchUpload means it is gone. Returns a note for the user when parts may be left behind (they cost money
   * until a lifecycle rule removes them), else undefined.
   */
  private async confirmAborted(Key: string, UploadId: string | undefined): Promise<string | undefined> {
    if (!UploadId) return undefined;
    return abortUpload(this.client, { bucket: this.bucket, key: Key, uploadId: UploadId });
  }

  /** The upload needs no abort any more. A failed note is harmless: aborting a finished upload is a no-op. */
  private async ended(opts: PutOptions, uploadId: string | undefined): Promise<void> {
    if (uploadId) await opts.uploads?.uploadEnded(uploadId).catch(() => undefined);
  }

  private wrap(op: string, key: string, err: unknown, hint?: string): SidecarError {
    if (err instanceof SidecarError) return err;
    const where = `s3://${this.bucket}/${this.root}${key}`;
    if (op !== 'put' && isNotFound(err)) {
      return new SidecarError('STORAGE_NOT_FOUND', `no object ${where}`, undefined, { cause: err });
    }
    const e = shape(err);
    const status = e.$metadata?.httpStatusCode;
    // A server's (or errno) code leads; a plain Error (e.g. the source stream's) has only its message.
    const code = e.Code ?? e.code ?? (status || (e.name && e.name !== 'Error') ? e.name : undefined);
    // The SDK's messages name the request, never the secret key; cap them, some servers answer with HTML pages.
    const detail = (e.message ?? '').replace(/\s+/g, ' ').slice(0, 300);
    const parts = [code, status ? `(HTTP ${status})` : undefined].filter(Boolean).join(' ');
    return new SidecarError(
      'STORAGE_FAILED',
      `S3 ${op} ${where} failed: ${[parts, detail].filter(Boolean).join(': ') || 'unknown error'}`,
      hint ?? hintFor(code) ?? virtualHostHint(this.bucket, code, detail),
      { cause: err },
    );
  }
}
