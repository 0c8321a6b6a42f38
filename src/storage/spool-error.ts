import { SidecarError } from '../common/errors.js';

/**
 * A file-system error on the spool (disk full, read-only, permissions) as a STORAGE_FAILED error that names
 * the spool and what to do; anything else is returned unchanged.
 */
export function spoolError(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return err;
  return spoolWriteFailed(path, (err as Error).message, err);
}

/** The same, from what a process writing the spool file said (a compressor's "No space left on device"). */
export function spoolWriteFailed(path: string, detail: string, cause?: unknown): SidecarError {
  return new SidecarError(
    'STORAGE_FAILED',
    `spool ${path}: ${detail}`,
    'free space in BACKUP_SPOOL_DIR or point it at a larger, writable disk (BACKUP_SPOOL=never streams straight to the target)',
    cause === undefined ? undefined : { cause },
  );
}
