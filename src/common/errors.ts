/**
 * Typed errors with stable codes. The CLI maps a code to an exit status and prints the message and the hint;
 * logs carry the code so alerts can match on it.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'USAGE'
  | 'LOCKED'
  | 'DOCKER_UNAVAILABLE'
  | 'DISCOVERY_FAILED'
  | 'VOLUME_NOT_FOUND'
  | 'QUIESCE_FAILED'
  | 'RESUME_FAILED'
  | 'HOOK_FAILED'
  | 'LABEL_INVALID'
  | 'MAINTENANCE_FAILED'
  | 'DUMP_FAILED'
  | 'STORAGE_NOT_FOUND'
  | 'STORAGE_FAILED'
  | 'SNAPSHOT_NOT_FOUND'
  | 'INTEGRITY_FAILED'
  | 'HOSTILE_ARCHIVE'
  | 'RESTORE_REFUSED'
  | 'RESTORE_FAILED'
  | 'CODEC_UNAVAILABLE'
  | 'DECRYPTION_FAILED'
  | 'SWARM_NOT_MANAGER'
  | 'SWARM_UNSUPPORTED'
  | 'INTERRUPTED';

/** Exit status per error code; documented in README ("Exit codes"). */
export const EXIT_CODES: Record<ErrorCode, number> = {
  CONFIG_INVALID: 2,
  USAGE: 2,
  LOCKED: 3,
  DOCKER_UNAVAILABLE: 4,
  DISCOVERY_FAILED: 4,
  VOLUME_NOT_FOUND: 4,
  QUIESCE_FAILED: 5,
  RESUME_FAILED: 5,
  HOOK_FAILED: 5,
  LABEL_INVALID: 2,
  MAINTENANCE_FAILED: 5,
  DUMP_FAILED: 5,
  STORAGE_NOT_FOUND: 6,
  STORAGE_FAILED: 6,
  SNAPSHOT_NOT_FOUND: 6,
  INTEGRITY_FAILED: 7,
  HOSTILE_ARCHIVE: 7,
  RESTORE_REFUSED: 8,
  RESTORE_FAILED: 9,
  CODEC_UNAVAILABLE: 2,
  // A missing or wrong age key is a configuration problem: the archive itself may be fine.
  DECRYPTION_FAILED: 2,
  // Where the sidecar runs, or a service setting it cannot work with: fixed in the stack file.
  SWARM_NOT_MANAGER: 4,
  SWARM_UNSUPPORTED: 2,
  INTERRUPTED: 130,
};

export class SidecarError extends Error {
  override readonly name = 'SidecarError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** What the user can do about it. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSidecarError(err: unknown, code?: ErrorCode): err is SidecarError {
  return err instanceof SidecarError && (code === undefined || err.code === code);
}

/** A short, single-line description of any thrown value, for logs and CLI output. */
export function describeError(err: unknown): string {
  if (err instanceof SidecarError) return err.hint ? `${err.message} — ${err.hint}` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * When one side of a producer/consumer pair fails, the other usually fails with a bare "premature close" or
 * the same raw error: report the error that says what went wrong.
 */
export function throwFirstCause(results: PromiseSettledResult<unknown>[]): void {
  const errors = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => r.reason as unknown);
  if (errors.length === 0) return;
  const premature = (e: unknown) => (e as { code?: string })?.code === 'ERR_STREAM_PREMATURE_CLOSE';
  // A pipeline destroys every stream with the first raw error (e.g. ENOSPC); the side that wrapped it in a
  // SidecarError knows where it happened (which target, which file).
  throw errors.find((e) => e instanceof SidecarError) ?? errors.find((e) => !premature(e)) ?? errors[0];
}
