import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import type { Config } from '../config/types.js';
import { datadirVolume } from '../database/dump.js';
import { type FoundDatabase, findDatabase } from '../database/find.js';
import { resolveExcludes, type VolumeExcludes } from '../moodle/excludes.js';
import { Maintenance } from '../moodle/maintenance.js';
import { reportSite } from '../moodle/report.js';
import { findSite, type SiteParts } from '../moodle/site.js';
import type { Logger } from '../observe/logger.js';
import type { Stack, VolumeTarget } from '../stack/discover.js';
import type { StateStore } from '../stack/state.js';

/** What the Moodle-aware part of a backup decided before anything is touched. */
export interface MoodlePlan {
  site: SiteParts;
  maintenance: Maintenance;
  /** Exclusions per Docker volume name. */
  excludes: Map<string, VolumeExcludes>;
  /** Online mode with the datadir selected: dump this server instead of reading that volume. */
  dump: { db: FoundDatabase; volume: VolumeTarget; destination: string } | null;
  /** The volumes to read as tar (all selected ones but a dumped datadir). */
  tarVolumes: VolumeTarget[];
  /** What the snapshot lacks because of how Moodle was (not) found (moodle/report.ts). */
  siteWarnings: string[];
}

/** Finds Moodle and MariaDB, resolves excludes and, in online mode, which server to dump. */
export async function planMoodle(
  docker: Docker,
  stack: Stack,
  config: Pick<Config, 'mode' | 'exclude'>,
  state: StateStore,
  log: Logger,
): Promise<MoodlePlan> {
  const site = await findSite(docker, stack);
  const siteWarnings = reportSite(stack, site, log);
  const { byVolume, warnings } = resolveExcludes(stack, site.moodle?.dataroot?.volume ?? null, config);
  for (const w of warnings) log.warn({ step: 'plan' }, w);
  let dump: MoodlePlan['dump'] = null;
  if (config.mode === 'online') {
    log.info(
      { step: 'plan', mode: 'online' },
      'online mode: nothing is stopped; the database is dumped in one transaction, file volumes are read live',
    );
    // The engine comes from what the stack's containers run, not from Moodle's config.
    const database = await findDatabase(docker, stack);
    if (!database) {
      throw new SidecarError(
        'DUMP_FAILED',
        `online mode needs the project's database server (MariaDB/MySQL or PostgreSQL) running, and none was found in ${stack.project}`,
        'start the database container, label it moodle-backup.database=true, or use BACKUP_MODE=stop',
      );
    }
    const found = await datadirVolume(docker, database, stack.volumes);
    if (found) dump = { db: database, ...found };
    else
      log.info(
        { step: 'plan', container: database.container.name },
        'online mode: the database datadir is not among the selected volumes, so no dump is taken',
      );
  }
  log.info(
    {
      step: 'plan',
      moodle: site.moodle?.container.name ?? null,
      dataroot: site.moodle?.dataroot?.path ?? null,
      database: dump?.db.container.name ?? site.database?.container.name ?? null,
      excludes: Object.fromEntries([...byVolume].map(([k, v]) => [k, v.rules])),
    },
    'moodle: site parts found',
  );
  return {
    site,
    maintenance: new Maintenance(docker, site.moodle, state, log),
    excludes: byVolume,
    dump,
    tarVolumes: dump ? stack.volumes.filter((v) => v.name !== dump?.volume.name) : stack.volumes,
    siteWarnings,
  };
}
