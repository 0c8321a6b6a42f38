import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError } from '../common/errors.js';
import { dockerStatus } from '../docker/client.js';
import { HELPER_LABEL, helperOwner } from '../docker/labels.js';
import { findSelf } from '../docker/self.js';
import { discoverStack } from '../stack/discover.js';
import { MOUNT, pickHelperImage } from '../volume/archive-api.js';
import { extractInto, mountPointCommands } from '../volume/extract.js';
import { runInVolume } from '../volume/restore-volume.js';
import { checkDatabase } from './mariadb.js';
import { checkPostgres } from './postgres.js';
import type { VerifyOptions } from './types.js';

/** Prefix of the drill's scratch volumes and containers (they also carry HELPER_LABEL). */
export const DRILL_PREFIX = 'moodle-backup-drill';

/**
 * One volume's drill: a fresh labelled scratch volume, the same extraction as a restore, entry counts from
 * an independent `find`, and the database check when the archive holds a MariaDB or PostgreSQL datadir.
 */
export async function drill(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  stats: TarStats,
  image: string,
  source: Readable,
  progress?: NodeJS.ReadWriteStream,
): Promise<string> {
  const { docker } = o;
  const scratch = `${DRILL_PREFIX}-${rand()}-${v.name}`;
  try {
    await docker.createVolume({ Name: scratch, Labels: { [HELPER_LABEL]: helperOwner() } });
    await extractInto(docker, scratch, image, source, m, v, o.signal, o.config.encryption, null, progress);
    const got = await countEntries(docker, scratch, image);
    const want = {
      files: stats.files + stats.hardlinks,
      dirs: stats.dirs - (stats.root ? 1 : 0),
      symlinks: stats.symlinks,
    };
    const diff = (Object.keys(want) as (keyof typeof want)[])
      .filter((k) => got[k] !== want[k])
      .map((k) => `${k}: ${got[k]} extracted, ${want[k]} in the archive`);
    if (diff.length > 0) {
      throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: extraction differs (${diff.join(', ')})`);
    }
    const counts = `extracted ${got.files} files, ${got.dirs} dirs, ${got.symlinks} symlinks`;
    const pg = stats.postgresDatadir;
    if (!stats.mariadbDatadir && !pg) return counts;
    // What restore does after extraction: the mount point gets its recorded owner and mode (Docker leaves
    // it root-owned), so a server that runs as its own user can write there.
    if (stats.root) await runInVolume(docker, scratch, image, mountPointCommands(stats.root).join(' && '));
    const name = `${DRILL_PREFIX}-${rand()}-db`;
    const check = pg
      ? await checkPostgres(o, m, v, pg, scratch, name)
      : await checkDatabase(o, m, v, scratch, name);
    return `${counts}; ${check}`;
  } finally {
    await docker
      .getVolume(scratch)
      .remove({ force: true })
      .catch((err: unknown) => {
        if (dockerStatus(err) !== 404)
          o.log.warn({ step: 'drill', volume: scratch, err }, `could not remove scratch volume ${scratch}`);
      });
  }
}

/** Files (hard links included), directories and symlinks below the mount point, NUL-separated so any name counts once. */
async function countEntries(
  docker: Docker,
  volume: string,
  image: string,
): Promise<{ files: number; dirs: number; symlinks: number }> {
  const n = (t: string) => `"$(find . -mindepth 1 -type ${t} -print0 | tr -dc '\\000' | wc -c)"`;
  const script = `cd ${MOUNT} && printf 'COUNTS %s %s %s\\n' ${n('f')} ${n('d')} ${n('l')}`;
  const text = await runInVolume(docker, volume, image, script, { readOnly: true });
  const match = text.match(/COUNTS\s+(\d+)\s+(\d+)\s+(\d+)/);
  if (!match) throw new Error(`counting entries in ${volume} failed: ${text.trim().slice(-300)}`);
  return { files: Number(match[1]), dirs: Number(match[2]), symlinks: Number(match[3]) };
}

/** The image for the drill's helpers: as for restore, else an image of the snapshot present locally. */
export async function drillHelperImage(o: VerifyOptions, m: Manifest): Promise<string> {
  if (o.config.helperImage) return o.config.helperImage;
  const self = await findSelf(o.docker);
  if (self) return self.image;
  try {
    const stack = await discoverStack(
      o.docker,
      { project: o.config.project ?? m.project, volumes: [] },
      self,
    );
    return pickHelperImage(o.config, undefined, stack);
  } catch {
    for (const s of m.stack.services) {
      if (
        await o.docker
          .getImage(s.imageId)
          .inspect()
          .catch(() => null)
      )
        return s.imageId;
    }
  }
  throw new SidecarError(
    'DISCOVERY_FAILED',
    'no image for the restore drill helper containers',
    'set BACKUP_HELPER_IMAGE',
  );
}

export function rand(): string {
  return Math.random().toString(36).slice(2, 8);
}
