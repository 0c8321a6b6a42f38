import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { CodecImpl } from '../archive/codec.js';
import type { ManifestVolume } from '../archive/manifest.js';
import { HashTap } from '../archive/tap.js';
import { throwFirstCause } from '../common/errors.js';
import type { VolumeExcludes } from '../moodle/excludes.js';
import type { Progress } from '../observe/progress.js';
import type { VolumeTarget } from '../stack/discover.js';
import { readVolumeTar, withHelper } from '../volume/archive-api.js';
import { type CompressedSource, compressedDirSource, dirNodeSource, nodeSource } from './source.js';
import type { Sink } from './steps.js';

export interface StreamResult {
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  ms: number;
  excludedEntries: number;
  excludedBytes: number;
  /** Which read path produced the tar (logged; the snapshot format is the same either way). */
  via: 'mount' | 'docker';
  /** Whether the raw tar bytes went through Node (false: GNU tar piped straight into the compressor). */
  viaNode: boolean;
}

/** How a volume's tar is encoded: the codec, then what follows it (the age stage when encrypting). */
export interface Encoding {
  codec: CodecImpl;
  level?: number;
  /** Made once per volume; the sha256 tap hashes what comes out of the last of them. */
  after: () => NodeJS.ReadWriteStream[];
}

/**
 * One volume: compressed tar (backup/source.ts) → [age] → sha256 tap → sink, with back-pressure end to end.
 * The compressed tar comes, in order of preference, from
 *  1. GNU tar on the volume's directory piped straight into the zstd binary (`mount` read path, `dir` given):
 *     Node never touches the raw bytes;
 *  2. GNU tar on the directory through Node's codec (the codec has no binary: gzip, none);
 *  3. Docker's getArchive through a helper container (`docker` read path), through Node's codec.
 * All produce the same entry names; the snapshot format is the same.
 */
export async function streamVolume(
  docker: Docker,
  v: VolumeTarget,
  image: string,
  encoding: Encoding,
  sink: Sink,
  signal?: AbortSignal,
  progress?: Progress,
  excludes?: VolumeExcludes,
  dir?: string | null,
  onWarning?: (message: string) => void,
  /** More GNU tar options (mount paths only): the blob exclusion of an incremental volume. */
  tarArgs?: string[],
): Promise<StreamResult> {
  const t0 = Date.now();
  const opts = {
    codec: encoding.codec,
    level: encoding.level,
    exclude: excludes?.rules ?? [],
    progress,
    onWarning,
    tarArgs,
  };
  const run = async (source: CompressedSource, via: 'mount' | 'docker', viaNode: boolean) => {
    const tap = new HashTap();
    const out = new PassThrough();
    const produce = pipeline([...source.stages, ...encoding.after(), tap, out], signal ? { signal } : {});
    const consume = sink(out).catch((err: unknown) => {
      out.destroy(err as Error);
      throw err;
    });
    throwFirstCause(await Promise.allSettled([produce, consume]));
    const excluded = await source.excluded();
    return {
      rawBytes: source.rawBytes(),
      storedBytes: tap.bytes,
      sha256: tap.digest(),
      ms: Date.now() - t0,
      excludedEntries: excluded.entries,
      excludedBytes: excluded.bytes,
      via,
      viaNode,
    };
  };
  if (dir) {
    const direct = compressedDirSource(dir, opts);
    return direct ? run(direct, 'mount', false) : run(dirNodeSource(dir, opts), 'mount', true);
  }
  return withHelper(docker, { volume: v.name, image, readOnly: true }, async (helper) =>
    run(nodeSource(await readVolumeTar(helper), opts), 'docker', true),
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
