import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LineFile } from '../common/line-file.js';
import { exited, stderrLines } from '../common/processes.js';
import type { BlobSet } from '../store/blob-set.js';
import { type ListedBlob, listBlobs } from '../store/listing.js';

/** What linkLive did: which of the set's blobs are in place, and those whose attributes still differ. */
export interface LiveLinks {
  reused: Uint8Array;
  count: number;
  /** Reused, but the live file's owner, mode or time is not the snapshot's. */
  differ: number[];
}

/**
 * Hard-links into `into` every file of the live dataroot that the snapshot holds at the same path with the
 * same size (Moodle never rewrites a blob: same name and size is the same content). One find lists the live
 * blob areas (store/listing.ts) and GNU cp links the matches, thousands a process: doing it here a file at a
 * time (lstat, link, attributes, ~100 µs each on 2 cores) took 20 s for 200,000 files. A file deleted
 * meanwhile (the site still runs beside the staging directory) is simply not reused: it is fetched.
 */
export async function linkLive(set: BlobSet, live: string, into: string): Promise<LiveLinks> {
  const out: LiveLinks = { reused: new Uint8Array(set.length), count: 0, differ: [] };
  if (set.length === 0) return out;
  const table = new HashTable(set);
  const listFile = join(into, `.mbs-links-${randomBytes(6).toString('hex')}`);
  const list = new LineFile(listFile);
  try {
    for await (const l of listBlobs(live)) {
      const n = l.kind === 'blob' ? match(set, table, l) : -1;
      if (n < 0) continue;
      out.reused[n] = 1; // unless cp fails on it
      out.count++;
      await list.add(`${l.path}\0`);
    }
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
    list.abort();
    await rm(listFile, { force: true });
  }

  /** The set's index of the live file at the same path, when the sizes agree; -1 otherwise. */
  function match(s: BlobSet, t: HashTable, l: ListedBlob): number {
    for (const n of t.lookup(l.sha1)) {
      const b = s.at(n);
      if (b.path !== l.path) continue;
      if (b.size !== l.size) return -1;
      if ((l.mode & 0o7777) !== b.mode || l.uid !== b.uid || l.gid !== b.gid || l.mtimeMs !== b.mtimeMs)
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
