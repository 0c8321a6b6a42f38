import type Docker from 'dockerode';
import type { Manifest } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import type { Config } from '../config/types.js';
import type { StartReport } from '../moodle/after-start.js';
import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';

/** The restore pipeline's input, plan and result, shared by its steps (so none imports run.ts). */

export interface RestoreOptions {
  docker: Docker;
  config: Config;
  backend: Backend;
  log: Logger;
  snapshot: string;
  /** Short names; default every volume of the snapshot. */
  volumes?: string[];
  /** Save the current state of the volumes first (default true). */
  safetySnapshot?: boolean;
  dryRun?: boolean;
  /** Asked after verification, before anything changes; false aborts (interactive confirmation). */
  confirm?: (plan: RestorePlan) => Promise<boolean>;
  signal?: AbortSignal;
  /** `latest` means this job's newest snapshot; the safety snapshot is recorded as this job's. */
  job?: string;
}

/** What a restore will do, shown before anything changes. */
export interface RestorePlan {
  snapshot: Manifest;
  project: string;
  volumes: { name: string; dockerName: string; exists: boolean; storedBytes: number; rawBytes: number }[];
  stop: string[];
}

export interface RestoreResult {
  plan: RestorePlan;
  applied: boolean;
  safetySnapshot?: string;
  verified: Record<string, TarStats>;
  report?: StartReport;
  downtimeMs?: number;
}
