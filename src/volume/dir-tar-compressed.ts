import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { endsAfter, exited, firstCause, stderrLines as lines, stopper } from '../common/processes.js';
import { readError, tarReadOptions } from './dir-tar.js';

/** A compressor as a command line reading stdin and writing stdout (codec.ts `command`). */
export interface CompressorCommand {
  cmd: string;
  args: string[];
}

export interface CompressedDirTarOptions {
  /** Extra tar options, e.g. exclude-tar-args.ts. */
  tarArgs?: string[];
  /** Tar exited 1 ("file changed as we read it"): the archive is complete but may be inconsistent. */
  onWarning?: (message: string) => void;
  /** Raw tar bytes written so far, every few MiB (from tar's checkpoints). */
  onRawBytes?: (bytes: number) => void;
  /** Called once per regular file tar has archived (from its verbose listing), for the progress line. */
  onFile?: () => void;
}

export interface CompressedDirTar {
  /** The compressed tar. Ends only after tar AND the compressor have both exited successfully. */
  stream: Readable;
  /** Length of the uncompressed tar stream (tar's own --totals, end blocks and record padding included). */
  rawBytes(): number;
}

/** GNU tar's default record: 20 blocks of 512 bytes; `--checkpoint` counts these. */
const RECORD = 10240;
const CHECKPOINT_RECORDS = 1024;
/**
 * A line of `tar -cvv`'s listing, which GNU tar writes to stderr when the archive goes to stdout: type and
 * mode, numeric owner (--numeric-owner), ... Names are escaped (`\n`), so each entry is one line; `-` is a
 * regular file (hard links are `h`, as TarFileCounter leaves them out too).
 */
const LISTING = /^([-a-zA-Z])[-rwxsStT]{9} \d+\/\d+ /;

/**
 * The fast `mount` read path: GNU tar's stdout is the compressor's stdin (one kernel pipe between two child
 * processes), so the raw tar bytes never pass through Node; Node reads only the compressed output, for sha256,
 * encryption and the sink. The raw size comes from tar's `--totals`, progress from its `--checkpoint`s and
 * the file count from its verbose listing (only when asked: ~60 bytes of stderr per entry).
 *
 * A failure of either process fails the stream, and the other one is killed: a tar that dies mid-read leaves
 * the compressor a clean end of input, so the compressor's success alone would pass a truncated archive off
 * as complete. When the compressor dies first, tar's broken pipe is its consequence and the compressor's
 * error is the one reported.
 */
export function readDirTarCompressed(
  dir: string,
  compressor: CompressorCommand,
  opts: CompressedDirTarOptions = {},
): CompressedDirTar {
  const pair = startPair(dir, compressor, 'pipe', opts);
  const out = endsAfter(pair.done, pair.stop);
  pair.stdout?.pipe(out);
  return { stream: out, rawBytes: pair.rawBytes };
}

/**
 * Like readDirTarCompressed, with the compressor writing straight into the open file `fd` (its stdout): the
 * compressed bytes pass through no process but the compressor (no pipe into Node, no copy, no JS stream).
 * `done` settles once both have exited; on a failure the file holds a partial archive the caller discards.
 * `stop` kills both (an abort).
 */
export function writeDirTarCompressed(
  dir: string,
  compressor: CompressorCommand,
  fd: number,
  opts: CompressedDirTarOptions = {},
): { done: Promise<void>; rawBytes(): number; stop(): void } {
  const pair = startPair(dir, compressor, fd, opts);
  return { done: pair.done, rawBytes: pair.rawBytes, stop: pair.stop };
}

/** tar piped into the compressor, whose stdout is a pipe to this process or a file descriptor. */
function startPair(
  dir: string,
  compressor: CompressorCommand,
  stdout: 'pipe' | number,
  opts: CompressedDirTarOptions,
) {
  const z = spawn(compressor.cmd, compressor.args, { stdio: ['pipe', stdout, 'pipe'] });
  const tar = spawnTar(dir, z, opts);
  z.stdin?.destroy();

  let totals: number | undefined;
  const tarErr = lines(tar, (line) => {
    const entry = opts.onFile && LISTING.exec(line);
    if (entry) {
      if (entry[1] === '-') opts.onFile?.();
      return true;
    }
    const checkpoint = /^tar: #(\d+)$/.exec(line);
    if (checkpoint) {
      opts.onRawBytes?.(Number(checkpoint[1]) * RECORD);
      return true;
    }
    const total = /^Total bytes written: (\d+)/.exec(line);
    if (total) totals = Number(total[1]);
    return Boolean(total);
  });
  const zErr = lines(z, () => false);

  // Processes we killed ourselves (one failed, or the consumer gave up): their failure is not a cause.
  const { stop, killed } = stopper([tar, z]);
  const tarDone = exited(tar, 'tar', tarErr, (code) => code === 0 || code === 1).then((code) => {
    if (code === 1) opts.onWarning?.(`tar reading ${dir}: ${tarErr().trim()}`);
    if (totals === undefined) throw new Error('tar did not report its totals (is it GNU tar?)');
  });
  const zDone = exited(z, compressor.cmd, zErr).then(() => undefined);
  tarDone.catch(stop);
  zDone.catch(stop);
  const done = Promise.allSettled([tarDone, zDone]).then(([t, c]) => {
    const err = firstCause(t, c, killed(tar), killed(z));
    if (err) throw readError(dir, err.message);
  });
  return { done, stop, stdout: z.stdout, rawBytes: () => totals ?? 0 };
}

/**
 * GNU tar writing the directory into the compressor's stdin. The parent hands its end of that pipe to tar
 * and closes its own copy (the caller does): tar is the only writer, and the compressor sees end of input
 * when tar exits. Node never reads what tar writes.
 */
function spawnTar(dir: string, z: ChildProcess, opts: CompressedDirTarOptions): ChildProcess {
  return spawn(
    'tar',
    [
      ...tarReadOptions(dir),
      '--totals',
      ...(opts.onRawBytes ? [`--checkpoint=${CHECKPOINT_RECORDS}`, '--checkpoint-action=echo=#%u'] : []),
      ...(opts.onFile ? ['-vv'] : []),
      ...(opts.tarArgs ?? []),
      '-f',
      '-',
      '.',
    ],
    { stdio: ['ignore', z.stdin ?? 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
  );
}
