import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { endsAfter, exited, firstCause, stderrLines, stopper } from '../common/processes.js';

/** One member as tar listed it: the block its header starts at, type, size and stored name. */
export interface TarMember {
  block: number;
  type: string;
  size: number;
  name: string;
}

/** `tar -cvv -R --numeric-owner` on stderr: `block N: -rw-r----- 33/33  1234 2026-12-06 08:13 name`. */
const MEMBER = /^block (\d+): (\S)\S{9} \S+ +(\d+) \S+ \S+ (.*)$/;

export interface TarPack {
  /** The compressed tar (when no output file was given); ends only after tar and the compressor exited well. */
  stream: Readable | null;
  /** Both processes exited well (with an output file: the compressed tar is all in it). */
  done: Promise<void>;
  /** What tar archived, from its own listing (complete once `stream` ended). */
  members: TarMember[];
  /** tar's warnings (a file vanished or changed while read). */
  warnings(): string;
}

/**
 * GNU tar of the files named (NUL-separated) in `listFile`, its stdout the compressor's stdin: the data
 * never passes through Node, which reads only the compressed output. tar itself says where each member
 * starts (-R), so the pack's index comes from what was written, not from sizes listed before. trashdir/
 * files are stored under filedir/ names, as every pack entry is. A file that vanished is left out
 * (--ignore-failed-read); a symlink is archived as one, never followed.
 */
export function tarPack(
  root: string,
  listFile: string,
  /** Null: no compressor; tar's own output goes to `outFd` (a file of tar, framed later: frames.ts). */
  compressor: { cmd: string; args: string[] } | null,
  /** A file descriptor the compressor (or tar) writes to itself: its bytes never pass through Node. */
  outFd?: number,
): TarPack {
  const z = compressor
    ? spawn(compressor.cmd, compressor.args, { stdio: ['pipe', outFd ?? 'pipe', 'pipe'] })
    : null;
  const tar = spawn(
    'tar',
    [
      '-C',
      root,
      '-c',
      '--numeric-owner',
      '--format=gnu',
      '--no-recursion',
      // Two blob paths of one file (a blob and its copy under a wrong name) are each stored whole.
      '--hard-dereference',
      '--ignore-failed-read',
      '--transform=s,^trashdir/,filedir/,',
      '-vv',
      '-R',
      '--null',
      '--verbatim-files-from',
      '-T',
      listFile,
      '-f',
      '-',
    ],
    {
      stdio: ['ignore', z ? (z.stdin ?? 'ignore') : (outFd ?? 'pipe'), 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    },
  );
  z?.stdin?.destroy(); // tar is the only writer: the compressor sees the end of input when tar exits
  const members: TarMember[] = [];
  const tarErr = stderrLines(tar, (line) => {
    const m = MEMBER.exec(line);
    if (!m) return /^block \d+: \*\* Block of NULs \*\*$/.test(line);
    members.push({ block: Number(m[1]), type: m[2] as string, size: Number(m[3]), name: m[4] as string });
    return true;
  });
  const zErr = z ? stderrLines(z, () => false) : () => '';
  const { stop, killed } = stopper([tar, z]);
  // 1: a file changed while read; the caller checks every member against the listing and the hashes.
  const tarDone = exited(tar, 'tar', tarErr, (code) => code === 0 || code === 1);
  const zDone = z && compressor ? exited(z, compressor.cmd, zErr) : Promise.resolve(0);
  tarDone.catch(stop);
  zDone.catch(stop);
  const both = Promise.allSettled([tarDone, zDone]).then(([t, c]) => {
    const err = firstCause(t, c, killed(tar), killed(z));
    if (err) throw err;
  });
  if (outFd !== undefined) {
    both.catch(() => undefined); // the caller awaits `done`
    return { stream: null, done: both, members, warnings: tarErr };
  }
  const stream = endsAfter(both, stop);
  (z ?? tar).stdout?.pipe(stream);
  return { stream, done: both, members, warnings: tarErr };
}

/**
 * The SHA-1 of each file named in `listFile`, by `openssl sha1` (SHA extensions: ~1 CPU s a GB) in a
 * process of its own, beside tar reading the same files: the second read comes from the page cache.
 * A file it could not read (vanished) is simply absent from the result.
 */
export async function hashFiles(root: string, listFile: string): Promise<Map<string, string>> {
  const child = spawn('xargs', ['-0', '-r', '-a', listFile, 'openssl', 'sha1', '-r'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const err = stderrLines(child, (line) => /No such file or directory|bss_file\.c|BIO routines/.test(line));
  // 123: some openssl run failed (a file vanished); what it hashed is still right.
  const done = exited(child, 'openssl sha1', err, (code) => code === 0 || code === 123);
  done.catch(() => undefined);
  const hashes = new Map<string, string>();
  let rest = '';
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    const lines = (rest + chunk.toString('utf8')).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const m = /^([0-9a-f]{40}) \*(.*)$/.exec(line);
      if (m) hashes.set(m[2] as string, m[1] as string);
    }
  }
  await done;
  return hashes;
}
