import type { Readable } from 'node:stream';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { describeError, isSidecarError } from '../common/errors.js';
import { type Backend, copyObject, type ObjectInfo, type PutOptions } from './backend.js';

/** Where retries are reported, e.g. `(msg, fields) => logger.warn(fields, msg)`. */
export type RetryLog = (msg: string, fields: Record<string, unknown>) => void;

export interface RetryOptions {
  /** Total tries per operation, including the first (1 = no retry). */
  attempts: number;
  /** Delay before the second try; doubles per try. */
  baseDelayMs: number;
  /** Upper bound of any one delay. */
  maxDelayMs: number;
  log?: RetryLog;
  /** Which errors are worth another try; default: isTransient. */
  retryOn?: (err: unknown) => boolean;
  /** For tests: how to wait (default: a timer) and where jitter comes from (default: Math.random). */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** A Backend whose calls retry transient failures; `putFrom` also retries puts, from a fresh stream each time. */
export interface RetryingBackend extends Backend {
  /**
   * Like put, retried: `open` is called once per try and must return a fresh stream of the same bytes
   * (e.g. a new read stream of a spooled file). Plain put() cannot be retried: a one-shot stream is consumed
   * by the failed try. Within one try, lib-storage already retries single S3 parts.
   */
  putFrom(
    key: string,
    open: () => Readable | Promise<Readable>,
    opts?: PutOptions,
  ): Promise<{ size: number }>;
  /** Releases the wrapped backend's resources (e.g. the S3 client) when it has any. */
  close(): Promise<void>;
}

/** Node/libuv codes of failures that may pass: network hiccups and momentary resource exhaustion. */
const TRANSIENT_ERRNO = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EBUSY',
  'EAGAIN',
  'EMFILE',
  'ENFILE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/** S3 error codes that mean "try again later" although some come with a 4xx status. */
const TRANSIENT_S3 = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
]);

interface ErrorFields {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  cause?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/**
 * True for failures another try may cure: network errors, throttling and 5xx answers, found on the error or
 * its causes (backends wrap the original in SidecarError.cause). STORAGE_NOT_FOUND, refused keys, 4xx
 * answers (access denied, no such bucket) and local errors such as EACCES or ENOSPC are permanent.
 */
export function isTransient(err: unknown): boolean {
  if (isSidecarError(err, 'STORAGE_NOT_FOUND')) return false;
  let e: unknown = err;
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const f = e as ErrorFields;
    if (f.$retryable) return true;
    const status = f.$metadata?.httpStatusCode;
    if (typeof status === 'number' && (status >= 500 || status === 429 || status === 408)) return true;
    for (const c of [f.code, f.Code, f.name]) {
      if (typeof c === 'string' && (TRANSIENT_ERRNO.has(c) || TRANSIENT_S3.has(c))) return true;
    }
    e = f.cause;
  }
  return false;
}

/**
 * Calls `fn` until it succeeds, at most `attempts` times, waiting with exponential backoff between tries
 * while `retryOn(err)` (default: isTransient) says another try may help.
 */
export async function withBackoff<T>(
  fn: () => Promise<T>,
  options: Omit<RetryOptions, 'log'> & { onRetry?: (attempt: number, delayMs: number, err: unknown) => void },
): Promise<T> {
  const { attempts, baseDelayMs, maxDelayMs } = options;
  const retryOn = options.retryOn ?? isTransient;
  const sleep = options.sleep ?? ((ms: number) => sleepMs(ms).then(() => undefined));
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || !retryOn(err)) throw err;
      // "Equal jitter": at least half the exponential delay, so retries never stampede at zero.
      const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(cap / 2 + (random() * cap) / 2);
      options.onRetry?.(attempt, delayMs, err);
      await sleep(delayMs);
    }
  }
}

/** Wraps a backend so stat, list, delete, the opening of get and putFrom retry with exponential backoff. */
export function withRetry(backend: Backend, options: RetryOptions): RetryingBackend {
  const { attempts, baseDelayMs, maxDelayMs, log } = options;
  if (!Number.isInteger(attempts) || attempts < 1)
    throw new RangeError(`attempts must be ≥ 1, got ${attempts}`);
  if (!(baseDelayMs >= 0 && maxDelayMs >= baseDelayMs)) {
    throw new RangeError(`need 0 ≤ baseDelayMs ≤ maxDelayMs, got ${baseDelayMs}/${maxDelayMs}`);
  }
  const retry = <T>(op: string, key: string, fn: () => Promise<T>): Promise<T> =>
    withBackoff(fn, {
      ...options,
      onRetry: (attempt, delayMs, err) =>
        log?.('storage operation failed, retrying', {
          op,
          key,
          attempt,
          attempts,
          delayMs,
          location: backend.location,
          err: describeError(err),
        }),
    });

  return {
    location: backend.location,
    // One-shot stream: a failed try has consumed it, so it cannot be retried here (see putFrom).
    put: (key, body, opts) => backend.put(key, body, opts),
    putFrom: (key, open, opts) =>
      retry('put', key, async () => {
        const body = await open();
        try {
          return await backend.put(key, body, opts);
        } finally {
          body.destroy(); // no-op after a completed put; frees the source after a failed one
        }
      }),
    ...(backend.putFile
      ? {
          putFile: (key: string, path: string, opts: PutOptions & { contentLength: number }) =>
            retry('put', key, () => (backend.putFile as NonNullable<Backend['putFile']>)(key, path, opts)),
        }
      : {}),
    // Local files: nothing to retry.
    ...(backend.localPath
      ? { localPath: (key: string) => (backend.localPath as NonNullable<Backend['localPath']>)(key) }
      : {}),
    ...(backend.createFile
      ? { createFile: (key: string) => (backend.createFile as NonNullable<Backend['createFile']>)(key) }
      : {}),
    // A copy is one request (or a put from a fresh get each try): safe to repeat.
    copy: (from, to, opts) => retry('copy', to, () => copyObject(backend, from, to, opts)),
    get: (key) => retry('get', key, () => backend.get(key)),
    ...(backend.getRange
      ? {
          getRange: (key: string, start: number, end: number) =>
            retry('get', key, () => (backend.getRange as NonNullable<Backend['getRange']>)(key, start, end)),
        }
      : {}),
    stat: (key): Promise<ObjectInfo | null> => retry('stat', key, () => backend.stat(key)),
    list: (prefix) => retry('list', prefix, () => backend.list(prefix)),
    delete: (key) => retry('delete', key, () => backend.delete(key)),
    close: async () => {
      const closable = backend as Backend & { close?: () => Promise<void> };
      await closable.close?.();
    },
  };
}
