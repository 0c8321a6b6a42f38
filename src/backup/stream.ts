import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { CodecImpl } from '../archive/codec.js';
import type { ManifestVolume } from '../archive/manifest.js';
import { HashTap } from '../archive/tap.js';
import { throwFirstCause } from '../common/errors.js';
import { everyWhile } from '../common/every-while.js';
import type { VolumeExcludes } from '../moodle/excludes.js';
import type { Progress } from '../observe/progress.js';
import type { VolumeTarget } from '../stack/discover.js';
import type { WritableFile } from '../storage/backend.js';
import { sha256OfFile } from '../store/store-io.js';
import { readVolumeTar, withHelper } from '../volume/archive-api.js';
import { readError } from '../volume/dir-tar.js';
import type { CompressorCommand } from '../volume/dir-tar-compressed.js';
import type { LaterArchive } from './context.js';
import {
  type CompressedSource,
  compressedDirFile,
  compressedDirSource,
  dirNodeSource,
  nodeSource,
  type SourceOptions,
} from './source.js';
import type { Sink } from './steps.js';

/** How often the direct path pushes what the compressor wrote to disk. */
const FLUSH_EVERY_MS = 500;

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
  /**
   * Only when the compressor wrote the file itself (`direct`): hashed and published after the window. Until
   * then `storedBytes` is 0 and `sha256` empty.
   */
  later?: LaterArchive;
}

/** Where a volume's archive goes: a stream consumer, and a file the compressor can write itself if any. */
export interface ArchiveDest {
  sink: Sink;
  file?: () => Promise<WritableFile>;
}

/** How a volume's tar is encoded: the codec, then what follows it (the age stage when encrypting). */
export interface Encoding {
  codec: CodecImpl;
  level?: number;
  /** Made once per volume; the sha256 tap hashes what comes out of the last of them. */
  after: () => NodeJS.ReadWriteStream[];
  /**
   * `after` makes no stage (no age): the compressor's output may go straight to a file. A flag, not a call
   * of `after`: each age stage it makes uses up one of the openings prepared ahead (a passphrase's scrypt).
   */
  plain: boolean;
}

/**
 * One volume: compressed tar (backup/source.ts) → [age] → sha256 tap → sink, with back-pressure end to end.
 * The compressed tar comes, in order of preference, from
 *  1. GNU tar on the volume's directory piped straight into the zstd binary (`mount` read path, `dir` given):
 *     Node never touches the raw bytes;
 *  2. GNU tar on the directory through Node's codec (the codec has no binary: gzip, none);
 *  3. Docker's getArchive through a helper container (`docker` read path), through Node's codec.
 * All produce the same entry names; the snapshot format is the same. Path 1 without encryption and with a
 * file destination (a local target, the spool) goes further: zstd writes the file itself (`direct`), and its
 * hash and sync come after the window (`later`): 100 MB of database, 250 → 130 ms (docs/design.md).
 */
export async function streamVolume(
  docker: Docker,
  v: VolumeTarget,
  image: string,
  encoding: Encoding,
  dest: ArchiveDest,
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
    const consume = dest.sink(out).catch((err: unknown) => {
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
    const command = encoding.codec.command?.(encoding.level);
    if (command && dest.file && encoding.plain)
      return streamToFile(dir, command, opts, await dest.file(), t0, signal);
    const direct = compressedDirSource(dir, opts);
    return direct ? run(direct, 'mount', false) : run(dirNodeSource(dir, opts), 'mount', true);
  }
  return withHelper(docker, { volume: v.name, image, readOnly: true }, async (helper) =>
    run(nodeSource(await readVolumeTar(helper), opts), 'docker', true),
  );
}

/** The direct path: tar → zstd → the file, Node only waiting (see streamVolume). */
async function streamToFile(
  dir: string,
  command: CompressorCommand,
  opts: SourceOptions,
  file: WritableFile,
  t0: number,
  signal?: AbortSignal,
): Promise<StreamResult> {
  try {
    const source = compressedDirFile(dir, command, file.fd, opts);
    const abort = () => source.stop();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      // What zstd wrote goes to disk as it goes, so the commit's sync has little left (a 1 GB archive's
      // whole writeback at the end cost ~3 s of 10, see storage/writeback.ts).
      await everyWhile(source.done, FLUSH_EVERY_MS, () => file.flushSoFar());
      signal?.throwIfAborted();
    } finally {
      signal?.removeEventListener('abort', abort);
    }
    const excluded = await source.excluded();
    return {
      rawBytes: source.rawBytes(),
      storedBytes: 0,
      sha256: '',
      ms: Date.now() - t0,
      excludedEntries: excluded.entries,
      excludedBytes: excluded.bytes,
      via: 'mount',
      viaNode: false,
      later: {
        finish: async () => {
          try {
            const { id, storedSize } = await sha256OfFile(file.path, signal);
            await file.commit();
            return { storedBytes: storedSize, sha256: id };
          } catch (err) {
            await file.discard();
            throw err;
          }
        },
        discard: () => file.discard(),
      },
    };
  } catch (err) {
    await file.discard();
    // The compressor could not write the file (a full or read-only disk): the destination is named, not the
    // volume being read.
    const message = String((err as Error)?.message);
    if (!WRITE_FAILED.test(message)) throw err;
    const prefix = readError(dir, '').message;
    throw file.writeFailed(message.startsWith(prefix) ? message.slice(prefix.length) : message);
  }
}

/** How zstd reports a failed write of its output ("Write error : cannot write block : No space left on device"). */
const WRITE_FAILED = /write error|no space left|disk quota|read-only file system|file too large/i;

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
