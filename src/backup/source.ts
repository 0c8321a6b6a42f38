import type { Readable } from 'node:stream';
import type { CodecImpl } from '../archive/codec.js';
import { ByteCounter } from '../archive/tap.js';
import type { ExcludeStats } from '../archive/tar-exclude.js';
import type { ExcludeRule } from '../config/exclude-rules.js';
import type { Progress } from '../observe/progress.js';
import { withExcludes } from '../volume/archive-api.js';
import { countExcluded } from '../volume/dir-excluded.js';
import { readDirTar } from '../volume/dir-tar.js';
import {
  type CompressedDirTarOptions,
  type CompressorCommand,
  readDirTarCompressed,
  writeDirTarCompressed,
} from '../volume/dir-tar-compressed.js';
import { tarExcludeArgs } from '../volume/exclude-tar-args.js';

/**
 * Where a volume's compressed tar comes from, for backup/stream.ts. Two shapes:
 *  - compressed by child processes (`mount` read path with a compressor binary): GNU tar → zstd, Node sees
 *    only zstd's output; excludes are tar's own options, counted separately on the directory;
 *  - compressed in Node's pipeline (any tar stream: the archive API, or GNU tar when the codec has no binary):
 *    tar → exclude filter → byte counter → [progress] → codec.
 */
export interface CompressedSource {
  /** A tar source and the stages that compress it, for one `pipeline`; its output ends only after
   * everything producing it succeeded. */
  stages: [Readable, ...NodeJS.ReadWriteStream[]];
  /** Uncompressed tar length; valid once `stream` has ended. */
  rawBytes(): number;
  /** What the excludes left out; awaited once `stream` has ended. */
  excluded(): Promise<ExcludeStats>;
}

export interface SourceOptions {
  codec: CodecImpl;
  level?: number;
  exclude: ExcludeRule[];
  progress?: Progress;
  onWarning?: (message: string) => void;
  /** More GNU tar options for the mount paths: the blob exclusion of an incremental volume. */
  tarArgs?: string[];
}

/** The fast path when the codec runs as a binary; null when it does not (gzip, none, no zstd binary). */
export function compressedDirSource(dir: string, o: SourceOptions): CompressedSource | null {
  const command = o.codec.command?.(o.level);
  if (!command) return null;
  const progress = o.progress;
  const tar = readDirTarCompressed(dir, command, tarOptions(o));
  if (progress) tar.stream.once('end', () => progress.finishLine(tar.rawBytes()));
  // Counted while tar reads (stack stopped or paused: the tree does not change); a failure fails the backup.
  const counting = countExcluded(dir, o.exclude);
  counting.catch(() => undefined); // awaited by excluded(); not an unhandled rejection meanwhile
  return { stages: [tar.stream], rawBytes: tar.rawBytes, excluded: () => counting };
}

/** compressedDirSource's processes with the compressor writing the open file `fd` itself (no stream). */
export function compressedDirFile(
  dir: string,
  command: CompressorCommand,
  fd: number,
  o: SourceOptions,
): { done: Promise<void>; stop(): void; rawBytes(): number; excluded(): Promise<ExcludeStats> } {
  const progress = o.progress;
  const tar = writeDirTarCompressed(dir, command, fd, tarOptions(o));
  const done = progress ? tar.done.then(() => progress.finishLine(tar.rawBytes())) : tar.done;
  const counting = countExcluded(dir, o.exclude);
  counting.catch(() => undefined); // awaited by excluded()
  return { done, stop: tar.stop, rawBytes: tar.rawBytes, excluded: () => counting };
}

/** GNU tar's options and progress hooks for the compressed mount paths. */
function tarOptions(o: SourceOptions): CompressedDirTarOptions {
  const progress = o.progress;
  return {
    tarArgs: [...tarExcludeArgs(o.exclude), ...(o.tarArgs ?? [])],
    onWarning: o.onWarning,
    onRawBytes: progress ? (n) => progress.reportTotal(n) : undefined,
    onFile: progress ? () => progress.reportFile() : undefined,
  };
}

/** Any tar stream, compressed in Node; `dir` reads it with GNU tar, else `tar` is Docker's archive. */
export function nodeSource(tar: Readable, o: SourceOptions): CompressedSource {
  let excluded: ExcludeStats = { entries: 0, bytes: 0 };
  const filtered = withExcludes(tar, {
    exclude: o.exclude,
    onExcluded: (s) => {
      excluded = s;
    },
  });
  const raw = new ByteCounter();
  return {
    stages: [filtered, raw, ...(o.progress ? [o.progress] : []), o.codec.compress(o.level)],
    rawBytes: () => raw.bytes,
    excluded: async () => excluded,
  };
}

/** The `mount` read path without a compressor binary: GNU tar's output through Node (nodeSource). */
export function dirNodeSource(dir: string, o: SourceOptions): CompressedSource {
  return nodeSource(readDirTar(dir, { onWarning: o.onWarning, tarArgs: o.tarArgs }), o);
}
