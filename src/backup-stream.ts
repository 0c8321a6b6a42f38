import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { ManifestVolume } from './archive/manifest.js';
import { ByteCounter, HashTap } from './archive/tap.js';
import type { Sink } from './backup-steps.js';
import { readDirTar } from './docker/dir-tar.js';
import type { VolumeTarget } from './docker/discover.js';
import { readVolumeTar, withHelper } from './docker/volumes.js';
import { throwFirstCause } from './errors.js';
import type { VolumeExcludes } from './moodle/excludes.js';
import type { Progress } from './observe/progress.js';

export interface StreamResult {
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  ms: number;
  excludedEntries: number;
  excludedBytes: number;
  /** Which read path produced the tar (logged; the snapshot format is the same either way). */
  via: 'mount' | 'docker';
}

/**
 * Volume tar → byte counter → codec → [age] → sha256 tap → sink, with back-pressure end to end. The tar comes
 * from GNU tar on the volume's directory when `dir` is given (the `mount` read path), else from Docker's
 * getArchive through a helper container; both produce the same entry names, the rest is shared.
 */
export async function streamVolume(
  docker: Docker,
  v: VolumeTarget,
  image: string,
  /** The codec, then the encryption stage when encrypting: the tap hashes what is stored. */
  encode: NodeJS.ReadWriteStream[],
  sink: Sink,
  signal?: AbortSignal,
  progress?: Progress,
  excludes?: VolumeExcludes,
  dir?: string | null,
  onWarning?: (message: string) => void,
): Promise<StreamResult> {
  const t0 = Date.now();
  let excluded = { entries: 0, bytes: 0 };
  const opts = {
    exclude: excludes?.rules,
    onExcluded: (s: { entries: number; bytes: number }) => {
      excluded = s;
    },
    onWarning,
  };
  const run = async (tar: Readable, via: 'mount' | 'docker'): Promise<StreamResult> => {
    const raw = new ByteCounter();
    const tap = new HashTap();
    const out = new PassThrough();
    const stages: NodeJS.ReadWriteStream[] = [raw];
    if (progress) stages.push(progress);
    const produce = pipeline([tar, ...stages, ...encode, tap, out], signal ? { signal } : {});
    const consume = sink(out).catch((err: unknown) => {
      out.destroy(err as Error);
      throw err;
    });
    throwFirstCause(await Promise.allSettled([produce, consume]));
    return {
      rawBytes: raw.bytes,
      storedBytes: tap.bytes,
      sha256: tap.digest(),
      ms: Date.now() - t0,
      excludedEntries: excluded.entries,
      excludedBytes: excluded.bytes,
      via,
    };
  };
  if (dir) return run(readDirTar(dir, opts), 'mount');
  return withHelper(docker, { volume: v.name, image, readOnly: true }, async (helper) =>
    run(await readVolumeTar(helper, opts), 'docker'),
  );
}

export function manifestVolume(
  v: VolumeTarget,
  file: string,
  r: StreamResult,
  ex: VolumeExcludes,
): ManifestVolume {
  return {
    name: v.short,
    dockerName: v.name,
    file,
    rawBytes: r.rawBytes,
    storedBytes: r.storedBytes,
    sha256: r.sha256,
    mountedAt: v.mountedBy.map((m) => ({ service: m.service, destination: m.destination })),
    excluded: ex.rules,
    excludedEntries: r.excludedEntries,
    excludedBytes: r.excludedBytes,
  };
}
