import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { ManifestVolume } from './archive/manifest.js';
import { ByteCounter, HashTap } from './archive/tap.js';
import type { Sink } from './backup-steps.js';
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
}

/** Docker tar → byte counter → codec → [age] → sha256 tap → sink, with back-pressure end to end. */
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
): Promise<StreamResult> {
  const t0 = Date.now();
  let excluded = { entries: 0, bytes: 0 };
  return withHelper(docker, { volume: v.name, image, readOnly: true }, async (helper) => {
    const tar = await readVolumeTar(helper, {
      exclude: excludes?.rules,
      onExcluded: (s) => {
        excluded = s;
      },
    });
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
    };
  });
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
