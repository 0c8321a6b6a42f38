import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config, Target } from '../../src/config/types.js';
import { IMAGES } from './docker.js';

export interface TempDirs {
  root: string;
  archive: string;
  state: string;
  spool: string;
  remove(): Promise<void>;
}

/** Scratch directories for one test: local target, state dir, spool dir. */
export async function tempDirs(tag = 'run'): Promise<TempDirs> {
  const root = await mkdtemp(join(tmpdir(), `mbst-${tag}-`));
  return {
    root,
    archive: join(root, 'archive'),
    state: join(root, 'state'),
    spool: join(root, 'spool'),
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

/** A complete Config for tests: the stack's project, scratch dirs, the busybox helper image. */
export function testConfig(project: string, dirs: TempDirs, over: Partial<Config> = {}): Config {
  const target: Target = over.target ?? { type: 'local', path: dirs.archive };
  return {
    project,
    volumes: [],
    mode: 'stop',
    stopLabel: 'true',
    stopTimeoutSeconds: 60,
    compression: 'zstd',
    spool: 'auto',
    spoolDir: dirs.spool,
    readPath: 'auto',
    incremental: 'auto',
    stateDir: dirs.state,
    helperImage: IMAGES.busybox,
    retention: {
      keepLast: 0,
      keepHourly: 0,
      keepDaily: 7,
      keepWeekly: 4,
      keepMonthly: 6,
      keepYearly: 3,
      keepWithinDays: 0,
      keepPreRestoreDays: 14,
      sweepGraceHours: 24,
    },
    logLevel: 'info',
    ...over,
    target,
  };
}

/** Environment for running the CLI against a test stack with a local target. */
export function cliEnv(
  project: string,
  dirs: TempDirs,
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ['PATH', 'HOME', 'DOCKER_HOST', 'NODE_EXTRA_CA_CERTS'])
    if (process.env[k]) env[k] = process.env[k];
  return {
    ...env,
    BACKUP_PROJECT: project,
    BACKUP_ARCHIVE: dirs.archive,
    BACKUP_STATE_DIR: dirs.state,
    BACKUP_SPOOL_DIR: dirs.spool,
    BACKUP_HELPER_IMAGE: IMAGES.busybox,
    LOG_LEVEL: 'info',
    ...extra,
  };
}
