import { pipeline, type Readable } from 'node:stream';
import type Docker from 'dockerode';
import { type ExcludeStats, TarExclude } from '../archive/tar-exclude.js';
import { SidecarError } from '../common/errors.js';
import type { ExcludeRule } from '../config/exclude-rules.js';
import type { Config } from '../config/types.js';
import { dockerStatus } from '../docker/client.js';
import { HELPER_LABEL, helperOwner } from '../docker/labels.js';

/** Where helper containers mount the volume they work on. */
export const MOUNT = '/volume';

export async function volumeExists(docker: Docker, name: string): Promise<boolean> {
  try {
    await docker.getVolume(name).inspect();
    return true;
  } catch (err) {
    if (dockerStatus(err) === 404) return false;
    throw err;
  }
}

export interface HelperOptions {
  volume: string;
  image: string;
  readOnly: boolean;
  /** Command when the helper must run (emptying a volume); omitted = created, never started. */
  cmd?: string[];
}

/**
 * Runs `fn` with a helper container that mounts one volume, and removes the helper afterwards whatever
 * happens. Docker serves getArchive/putArchive from a created-but-never-started container, so reading
 * needs no running process and any locally present image works.
 */
export async function withHelper<T>(
  docker: Docker,
  opts: HelperOptions,
  fn: (c: Docker.Container) => Promise<T>,
): Promise<T> {
  const container = await docker.createContainer({
    name: `moodle-backup-helper-${Math.random().toString(36).slice(2, 10)}`,
    Image: opts.image,
    Entrypoint: opts.cmd ? [] : undefined,
    Cmd: opts.cmd ?? ['true'],
    Labels: { [HELPER_LABEL]: helperOwner() },
    NetworkDisabled: true,
    HostConfig: {
      Binds: [`${opts.volume}:${MOUNT}${opts.readOnly ? ':ro' : ''}`],
      NetworkMode: 'none',
    },
  });
  try {
    return await fn(container);
  } finally {
    // v: an image that declares VOLUMEs gives each helper anonymous volumes; remove them with it.
    await container.remove({ force: true, v: true }).catch(() => undefined);
  }
}

export interface ReadVolumeOptions {
  /**
   * Paths to leave out (archive/tar-exclude.ts has the rule syntax): `dir/` keeps the directory entry and
   * drops its contents, `name` drops the entry and everything below it. Applied while streaming. Whoever
   * changes how the tar bytes are produced must keep this option's meaning (test/unit/tar-exclude.test.ts
   * and the excludes integration test check it).
   */
  exclude?: ExcludeRule[];
  /** Receives what was dropped once the stream has ended. */
  onExcluded?: (stats: ExcludeStats) => void;
}

/** The volume's contents as a tar stream rooted at `./` (the mount point itself is the `./` entry). */
export async function readVolumeTar(
  helper: Docker.Container,
  opts: ReadVolumeOptions = {},
): Promise<Readable> {
  const tar = (await helper.getArchive({ path: `${MOUNT}/.` })) as unknown as Readable;
  return withExcludes(tar, opts);
}

/** Puts the exclude filter behind a tar stream, whichever read path produced it. */
export function withExcludes(tar: Readable, opts: ReadVolumeOptions): Readable {
  if (!opts.exclude || opts.exclude.length === 0) {
    tar.once('end', () => opts.onExcluded?.({ entries: 0, bytes: 0 }));
    return tar;
  }
  const filter = new TarExclude(opts.exclude);
  filter.once('end', () => opts.onExcluded?.(filter.stats));
  // pipeline destroys both on an error of either, so the consumer sees the source's errors and an abort
  // downstream stops the source; the consumer's own pipeline reports the error.
  return pipeline(tar, filter, () => undefined);
}

/** Fails with a clear error when a volume selected for backup no longer exists. */
export async function assertVolume(docker: Docker, name: string, short: string): Promise<void> {
  if (!(await volumeExists(docker, name))) {
    throw new SidecarError(
      'VOLUME_NOT_FOUND',
      `volume ${short} (${name}) does not exist`,
      'check BACKUP_VOLUMES and `docker volume ls`; the volume may have been removed',
    );
  }
}

/**
 * The image for helper containers: configured, else the sidecar's own (it has a shell), else one the stack
 * already runs (present locally by definition, so nothing is ever pulled).
 */
export function pickHelperImage(
  config: Pick<Config, 'helperImage'>,
  selfImage: string | undefined,
  // Structural, not stack/'s Stack: volume/ sits below stack/ and must not import it.
  stack: { containers: { mounts: unknown[]; imageId?: string }[] },
): string {
  const fromStack = stack.containers.find((c) => c.mounts.length > 0)?.imageId;
  const image = config.helperImage ?? selfImage ?? fromStack;
  if (!image) {
    throw new SidecarError('DISCOVERY_FAILED', 'no image for helper containers', 'set BACKUP_HELPER_IMAGE');
  }
  return image;
}
