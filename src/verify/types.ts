import type Docker from 'dockerode';
import type { TarStats } from '../archive/tar-guard.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';

export interface VerifyOptions {
  docker: Docker;
  config: Config;
  backend: Backend;
  log: Logger;
  /** Id, unique prefix or `latest` (default); ignored with `all`. */
  snapshot?: string;
  /** Every snapshot at the target; incomplete and damaged entries count as failures. */
  all?: boolean;
  /** Restore drill: extract each archive into a scratch volume and check what came out. */
  deep?: boolean;
  /** Incremental volumes: download every pack the snapshot needs and hash every blob in it. */
  readData?: boolean;
  signal?: AbortSignal;
  /** Bounds for the drill's throwaway MariaDB (defaults: 180 s to answer ping, 30 min for the check). */
  dbStartTimeoutMs?: number;
  dbCheckTimeoutMs?: number;
}

/**
 * catalog: the snapshot directory itself; archive: level 1 (verifyVolume); blobs: an incremental volume's
 * blob list and its closure in the store (`--read-data`: every blob's content too); drill: `--deep`.
 */
export type VerifyLevel = 'catalog' | 'archive' | 'blobs' | 'drill';

export interface VerifyResult {
  snapshot: string;
  volume: string;
  level: VerifyLevel;
  ok: boolean;
  detail: string;
  code?: string;
  stats?: TarStats;
  ms: number;
}

export interface VerifyReport {
  ok: boolean;
  results: VerifyResult[];
}
