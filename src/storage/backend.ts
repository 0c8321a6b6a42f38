import type { Readable } from 'node:stream';

/** What a backend knows about one stored object. Keys are relative to the backend's root (its prefix). */
export interface ObjectInfo {
  key: string;
  size: number;
  modified: Date;
}

/** A multipart upload the server has started: enough for another process to abort it (no credentials). */
export interface MultipartRecord {
  bucket: string;
  /** The object key as sent to the server (prefix included). */
  key: string;
  uploadId: string;
  /** The target's endpoint ('' for AWS), so recovery picks the configured target that owns the bucket. */
  endpoint: string;
}

/**
 * Where a run notes the multipart uploads it has open (the state file), so a run killed mid-upload leaves
 * recovery what it needs to abort them: servers keep (and bill) the parts of an unfinished upload forever.
 */
export interface UploadLedger {
  /** Awaited before any part is sent. */
  uploadStarted(u: MultipartRecord): Promise<void>;
  /** Completed, or aborted and confirmed gone. */
  uploadEnded(uploadId: string): Promise<void>;
}

export interface PutOptions {
  /** The exact byte count expected; a stream of another length fails the put. */
  contentLength?: number;
  uploads?: UploadLedger;
}

/**
 * A file that another process writes in place (a compressor's stdout), then published under its key. Only a
 * backend whose objects are local files has it (Backend.createFile).
 */
export interface WritableFile {
  /** Open for writing at offset 0. */
  readonly fd: number;
  /** Where it is until commit(), to read back what was written. */
  readonly path: string;
  /** Pushes what was written so far to disk (the writer still runs): the final sync then has little left. */
  flushSoFar(): Promise<void>;
  /** Makes it durable and visible under its key, atomically like put; closes it. Resolves with its size. */
  commit(): Promise<{ size: number }>;
  /** Closes and removes it; nothing becomes visible. */
  discard(): Promise<void>;
  /** The error to report when the writing process could not write it (`detail`: what the process said). */
  writeFailed(detail: string): Error;
}

/**
 * The one storage abstraction (after restic's): every backend passes the same conformance suite in
 * test/integration/storage-conformance.test.ts. Retry, throttling and logging wrap a Backend; they do not live in it.
 *
 * Keys use '/' as separator and never start with '/'. `put` is atomic: an object becomes visible under
 * its key only once all its bytes are stored; a failed put leaves nothing visible (and no orphaned upload).
 */
export interface Backend {
  /** Human-readable location for logs, e.g. `local:/archive` or `s3://bucket/prefix`. Never contains secrets. */
  readonly location: string;
  /** Stores the stream under `key`, replacing any object there. Resolves with the number of bytes stored. */
  put(key: string, body: Readable, opts?: PutOptions): Promise<{ size: number }>;
  /**
   * Like put, from a file of exactly `contentLength` bytes, for a backend that does better reading the file
   * itself (S3: parts read into reused buffers, see s3-file-upload.ts). Optional: else put() a read stream.
   */
  putFile?(
    key: string,
    path: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }>;
  /**
   * Stores a copy of the object `from` (of exactly `contentLength` bytes) under `to` without passing its
   * bytes through this process when the backend can (local: a hard link; S3: CopyObject). Atomic like put.
   * Optional: copyObject() falls back to get and put.
   */
  copy?(from: string, to: string, opts: PutOptions & { contentLength: number }): Promise<{ size: number }>;
  /**
   * A file for another process to write that becomes the object `key` on commit (see WritableFile). Optional:
   * only a local directory has it; elsewhere the bytes go through put.
   */
  createFile?(key: string): Promise<WritableFile>;
  /**
   * Where the object `key` is as a local file, for a reader that does better opening it itself (a
   * decompressor reading a pack). Optional: only a local directory has it. The file may not exist.
   */
  localPath?(key: string): string;
  /** Streams the object. Rejects with SidecarError STORAGE_NOT_FOUND when it does not exist. */
  get(key: string): Promise<Readable>;
  /**
   * Streams bytes [start, end) of the object (a pack's frames, store/frames.ts); STORAGE_NOT_FOUND like get.
   * The stream ends early, never late, when the object is shorter: the caller checks the length it needs.
   */
  getRange?(key: string, start: number, end: number): Promise<Readable>;
  /** Size and time of the object, or null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Every object whose key starts with `prefix` (recursively), sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Removes the object; removing a missing object is not an error. */
  delete(key: string): Promise<void>;
}

/** A local-directory target is disk already: nothing is spooled in front of it. */
export function isLocalBackend(backend: Pick<Backend, 'location'>): boolean {
  return backend.location.startsWith('local:');
}

/** A server-side copy where the backend has one, else the bytes through this process (get, then put). */
export async function copyObject(
  backend: Backend,
  from: string,
  to: string,
  opts: PutOptions & { contentLength: number },
): Promise<{ size: number }> {
  if (backend.copy) return backend.copy(from, to, opts);
  return backend.put(to, await backend.get(from), opts);
}

/** A byte range [start, end) a reader may ask for: whole numbers, not empty. */
export function checkRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start)
    throw new RangeError(`not a byte range: [${start}, ${end})`);
}
