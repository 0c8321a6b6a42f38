import type { Target } from '../config/types.js';
import type { Backend } from './backend.js';
import { LocalBackend } from './local.js';
import { type RetryingBackend, type RetryLog, type RetryOptions, withRetry } from './retry.js';
import { LazyS3Backend } from './s3-lazy.js';

export type {
  Backend,
  MultipartRecord,
  ObjectInfo,
  PutOptions,
  UploadLedger,
  WritableFile,
} from './backend.js';
export { LocalBackend } from './local.js';
export { isTransient, type RetryingBackend, type RetryLog, type RetryOptions, withRetry } from './retry.js';

/** Four tries over about 3.5 s at most: rides out a restarting MinIO or a throttled bucket, fails fast otherwise. */
export const DEFAULT_RETRY: Pick<RetryOptions, 'attempts' | 'baseDelayMs' | 'maxDelayMs'> = {
  attempts: 4,
  baseDelayMs: 500,
  maxDelayMs: 2_000,
};

/** The backend for a configured target, wrapped in retries. Call close() when done (it frees the S3 client). */
export function createBackend(
  target: Target,
  opts: { log?: RetryLog; retry?: Partial<Omit<RetryOptions, 'log'>> } = {},
): RetryingBackend {
  const inner: Backend = target.type === 'local' ? new LocalBackend(target) : new LazyS3Backend(target);
  return withRetry(inner, { ...DEFAULT_RETRY, ...opts.retry, log: opts.log });
}
