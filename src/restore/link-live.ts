import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LineFile } from '../common/line-file.js';
import { exited, stderrLines } from '../common/processes.js';
import type { BlobSet } from '../store/blob-set.js';
import { BLOB_AREAS } from '../store/layout.js';

/** What linkLive did: which of the set's blobs are in place, and those whose attributes still differ. */
export interface LiveLinks {
  reused: Uint8Array;
  count: number;
  /** Reused, but the live file's owner, mode or time is not the snapshot's. */
  differ: number[];
}

/** Size, mode, owner, mtime, path of the live blob areas' files at a blob's depth. */
const FORMAT = '%s %m %U %G %T@ %p\\0';
const HEX40_GLOB = '[0-9a-f]'.repeat(40);

/**
 * Hard-links into `into` every file of the live dataroot that the snapshot holds at the same path with the
 * same size (Moodle never rewrites a blob: same name and size is the same content). One find lists the live
 * blob areas and GNU cp links the matches, thousands a process: doing it here a file at a time (lstat, link,
 * attributes, ~100 µs each on 2 cores) took 20 s for 200,000 files (bench, 200,000-file set). A file deleted
 * meanwhile (the site still runs beside the staging directory) is simply not reused: it is fetched.
 */
export async function linkLive(set: BlobSet, live: string, into: string): Promise<LiveLinks> {
  const out: LiveLinks = { reused: new Uint8Array(set.length), count: 0, differ: [] };
  const areas: string[] = [];
  for (const a of BLOB_AREAS)
    if ((await lstat(join(live, a)).catch(() => null))?.isDirectory()) areas.push(a);
  if (areas.length === 0 || set.length === 0) return out;
  const table = new HashTable(set);
  const listFile = join(into, `.mbs-links-${randomBytes(6).toString('hex')}`);
  const list = new LineFile(listFile);
  let find: ReturnType<typeof spawn> | undefined;
  try {
    find = spawn(
      'find',
      [...areas, '-mindepth', '3', '-maxdepth', '3', '-type', 'f', '-name', HEX40_GLOB, '-printf', FORMAT],
      { cwd: live, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const findErr = stderrLines(find, (l) => /No such file or directory/.test(l));
    const findDone = exited(find, 'find', findErr, (code) => code === 0 || code === 1);
    findDone.catch(() => undefined);
    let rest = '';
    for await (const chunk of find.stdout as AsyncIterable<Buffer>) {
      const records = (rest + chunk.toString('utf8')).split('\0');
      rest = records.pop() ?? '';
      for (const r of records) {
        const n = match(set, table, r);
        if (n < 0) continue;
        out.reused[n] = 1; // unless cp fails on it
        out.count++;
        await list.add(`${set.at(n).path}\0`);
      }
    }
    await findDone;
    await list.finish();
    // The few cp could not link (gone meanwhile): not reused after all, fetched instead.
    for (const path of await cpLinks(live, into, listFile))
      for (const n of table.lookup(path.slice(-40)))
        if (out.reused[n] && set.at(n).path === path) {
          out.reused[n] = 0;
          out.count--;
        }
    return out;
  } finally {
    if (find && find.exitCode === null && find.signalCode === null) find.kill('SIGKILL'); // stopped early
    list.abort();
    await rm(listFile, { force: true });
  }

  /** The set's index of the blob a find record names, when the sizes agree; -1 otherwise. */
  function match(s: BlobSet, t: HashTable, r: string): number {
    let at = 0;
    for (let k = 0; k < 5; k++) at = r.indexOf(' ', at) + 1;
    const f = r.slice(0, at - 1).split(' ');
    const path = r.slice(at);
    for (const n of t.lookup(path.slice(-40))) {
      const b = s.at(n);
      if (b.path !== path) continue;
      if (b.size !== Number(f[0])) return -1;
      const mode = Number.parseInt(f[1] ?? '', 8);
      const mtimeMs = Math.floor(Number(f[4]) * 1000);
      if (mode !== b.mode || Number(f[2]) !== b.uid || Number(f[3]) !== b.gid || mtimeMs !== b.mtimeMs)
        out.differ.push(n);
      return n;
    }
    return -1;
  }
}

/**
 * `cp -l --parents` of the listed paths (relative to `live`) into `into`, through xargs. Returns the paths it
 * could not link (gone meanwhile, or a file system without hard links): those are fetched from their packs.
 */
async function cpLinks(live: string, into: string, listFile: string): Promise<Set<string>> {
  const failed = new Set<string>();
  const child = spawn('xargs', ['-0', '-r', '-a', listFile, 'cp', '-l', '--parents', '-t', into, '--'], {
    cwd: live,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  const err = stderrLines(child, (line) => {
    // cp names the source as given (relative) and the target under `into`: either way, the blob's path.
    const paths = [...line.matchAll(/'([^']+)'/g)].map((m) => (m[1] as string).replace(`${into}/`, ''));
    const blob = paths.find((p) => /^(filedir|trashdir)\/[^/]+\/[^/]+\/[0-9a-f]{40}$/.test(p));
    if (blob) failed.add(blob);
    return blob !== undefined;
  });
  // 123: some cp run failed, for the files named on stderr (anything else fails the restore).
  await exited(child, 'cp -l', err, (code) => code === 0 || code === 123);
  return failed;
}

/**
 * An open-addressing table from a blob's SHA-1 to its indices in the set (both areas, when a content is in
 * filedir/ and trashdir/): 4 bytes a slot, twice the set's size, no string or object a blob.
 */
class HashTable {
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(private readonly set: BlobSet) {
    let size = 1024;
    while (size < set.length * 2) size *= 2;
    this.slots = new Int32Array(size).fill(-1);
    this.mask = size - 1;
    for (let n = 0; n < set.length; n++) {
      let at = set.hash(n).readUInt32BE(0) & this.mask;
      while (this.slots[at] !== -1) at = (at + 1) & this.mask;
      this.slots[at] = n;
    }
  }

  *lookup(sha1: string): Generator<number> {
    const want = Buffer.from(sha1, 'hex');
    if (want.length !== 20) return;
    for (let at = want.readUInt32BE(0) & this.mask; this.slots[at] !== -1; at = (at + 1) & this.mask) {
      const n = this.slots[at] as number;
      if (this.set.hash(n).equals(want)) yield n;
    }
  }
}
