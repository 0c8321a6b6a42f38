import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Manifest, ManifestDatabase } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import type { Config } from '../config/types.js';
import { loadDump } from '../database/load.js';
import { type MoodleFacts, readMoodleFacts } from '../moodle/facts.js';
import { findSite } from '../moodle/site.js';
import type { Logger } from '../observe/logger.js';
import type { ServiceContainer, Stack } from '../stack/discover.js';
import type { Backend } from '../storage/backend.js';
import { volumeExists } from '../volume/archive-api.js';
import { emptyVolume, ensureVolume } from '../volume/restore-volume.js';
import type { RestorePlan } from './types.js';

/** The snapshot's database dump, when the restore includes it (no volume filter, or its datadir volume named). */
export function selectDatabase(manifest: Manifest, wanted?: string[]): ManifestDatabase | null {
  const db = manifest.database ?? null;
  if (!db) return null;
  if (!wanted || wanted.length === 0) return db;
  return wanted.includes(db.volume.name) ? db : null;
}

function targetName(stack: Stack, db: ManifestDatabase): string {
  return (
    stack.allVolumes.find((x) => x.short === db.volume.name)?.name ?? `${stack.project}_${db.volume.name}`
  );
}

/** The container that loads the dump: the one that mounts the datadir volume (the snapshot's service first). */
export function dumpUser(stack: Stack, target: string, db: ManifestDatabase): ServiceContainer {
  const users = stack.containers.filter((c) => c.mounts.some((m) => m.volume === target));
  const c = users.find((x) => x.service === db.service) ?? users[0];
  if (!c) {
    throw new SidecarError(
      'USAGE',
      `snapshot's database is a dump, loaded through the database container, and no container of ${stack.project} mounts ${target}`,
      'create the stack first (docker compose up -d), then restore',
    );
  }
  return c;
}

/**
 * Adds the datadir volume to the restore plan: it is emptied and the database container (stopped with the
 * others) initialises it fresh before the dump is loaded. Checked before anything changes.
 */
export async function databasePlan(
  docker: Docker,
  plan: RestorePlan,
  stack: Stack,
  db: ManifestDatabase,
): Promise<void> {
  const dockerName = targetName(stack, db);
  const c = dumpUser(stack, dockerName, db);
  plan.volumes.push({
    name: db.volume.name,
    dockerName,
    exists: await volumeExists(docker, dockerName),
    storedBytes: db.storedBytes,
    rawBytes: db.rawBytes,
  });
  if ((c.state === 'running' || c.state === 'paused') && !plan.stop.includes(c.name)) plan.stop.push(c.name);
}

/** What runs now, for the "older than the snapshot" warnings. */
export async function runningVersions(
  docker: Docker,
  stack: Stack,
): Promise<{ moodle: MoodleFacts | null; mariadb: string | null }> {
  // The site first: version.php is where Moodle's code is (baked into an image, or under public/ from 5.1).
  const site = await findSite(docker, stack).catch(() => null);
  const moodle = await readMoodleFacts(docker, stack, site?.moodle).catch(() => null);
  return { moodle, mariadb: site?.database?.version ?? null };
}

export interface RestoreDatabaseInput {
  backend: Backend;
  config: Pick<Config, 'encryption'>;
  log: Logger;
  signal?: AbortSignal;
  manifest: Manifest;
  plan: RestorePlan;
  stack: Stack;
  db: ManifestDatabase;
  /** Helper image (to empty the volume). */
  image: string;
  /** Where the verified dump was spooled; undefined = read from the backend again (sha256 re-checked). */
  spoolDir: string | undefined;
  /** Records the volume's progress in the state file. */
  mark(state: 'emptied' | 'restored'): Promise<void>;
  /** Watches the raw dump as it is loaded (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream;
}

/**
 * Restore's database step for an online snapshot, with the stack stopped: empty the datadir volume, start
 * only the database container (its image initialises a fresh datadir), load the dump, check the rows.
 * Moodle starts afterwards with the others, so it never sees an empty database. Returns the volume name.
 */
export async function restoreDatabase(docker: Docker, i: RestoreDatabaseInput): Promise<string> {
  const target = i.plan.volumes.find((x) => x.name === i.db.volume.name)?.dockerName as string;
  await ensureVolume(docker, target, i.plan.project, i.db.volume.name);
  await emptyVolume(docker, target, i.image);
  await i.mark('emptied');
  const source = i.spoolDir
    ? createReadStream(join(i.spoolDir, i.db.file))
    : await i.backend.get(`${i.manifest.id}/${i.db.file}`);
  await loadDump(
    docker,
    dumpUser(i.stack, target, i.db),
    source,
    i.manifest,
    i.db,
    i.log,
    i.signal,
    i.config.encryption,
    i.progress,
  );
  await i.mark('restored');
  return target;
}
