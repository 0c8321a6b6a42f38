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
  // The set's hash order: a binary search a file (4 bytes a blob; an open-addressing table took 8).
  const order = set.hashOrder();
  const want = Buffer.alloc(20);
  /** Calls `each` with the set's entries of this SHA-1 (a content may be at two paths). */
  const lookup = (sha1: string, each: (n: number) => void) => {
    if (want.write(sha1, 'hex') === 20) set.find(order, want, 0, each);
  };
  const listFile = join(into, `.mbs-links-${randomBytes(6).toString('hex')}`);
  const list = new LineFile(listFile);
  try {
    for await (const l of listBlobs(live)) {
      const n = l.kind === 'blob' ? match(l) : -1;
      if (n < 0) continue;
      out.reused[n] = 1; // unless cp fails on it
      out.count++;
      await list.add(`${l.path}\0`);
    }
    await list.finish();
    // The few cp could not link (gone meanwhile): not reused after all, fetched instead.
    for (const path of await cpLinks(live, into, listFile)) {
      const sha1 = path.slice(-40);
      lookup(sha1, (n) => {
        if (out.reused[n] && set.isAt(n, path, sha1)) {
          out.reused[n] = 0;
          out.count--;
        }
      });
    }
    return out;
  } finally {
    list.abort();
    await rm(listFile, { force: true });
  }

  /** The set's index of the live file at the same path, when the sizes agree; -1 otherwise. */
  function match(l: ListedBlob): number {
    let found = -1;
    lookup(l.sha1, (n) => {
      if (found !== -1 || !set.isAt(n, l.path, l.sha1)) return;
      if (set.sizeOf(n) !== l.size) {
        found = -2;
        return;
      }
      if (!set.sameAttrs(n, l)) out.differ.push(n);
      found = n;
    });
    return found;
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
