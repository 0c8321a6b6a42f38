import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LineFile } from '../common/line-file.js';
import { exited, stderrLines } from '../common/processes.js';
import type { BlobSet } from '../store/blob-set.js';
import { leafOf, leafSlot, SLOTS } from '../store/leaf-table.js';
import type { Listed, ListedBlob } from '../store/listing.js';

/** What the live dataroot holds of a snapshot's blobs (matchLive), then what linkLive linked of it. */
export interface LiveLinks {
  /** 1: the live file at the entry's path has its size (and, once linked, is in place). */
  reused: Uint8Array;
  count: number;
  /** Reused, but the live file's owner, mode or time is not the snapshot's. */
  differ: number[];
  /** Per leaf directory slot (store/leaf-table.ts): every entry the live one holds, and those equal to the snapshot's (size and attributes). */
  perLeaf: { all: Uint32Array; same: Uint32Array };
  /** The set's hash order (BlobSet.hashOrder), kept for linkLive. */
  order: Uint32Array;
}

/**
 * Which of the set's blobs the live dataroot holds at the same path with the same size (Moodle never rewrites
 * a blob: same name and size is the same content), from one find's listing (store/listing.ts, every name:
 * what else a leaf directory holds counts in `perLeaf.all`). Nothing is linked yet.
 */
export async function matchLive(set: BlobSet, listing: AsyncIterable<Listed>): Promise<LiveLinks> {
  // The set's hash order: a binary search a file (4 bytes a blob; an open-addressing table took 8).
  const order = set.length > 0 ? set.hashOrder() : new Uint32Array(0);
  const out: LiveLinks = {
    reused: new Uint8Array(set.length),
    count: 0,
    differ: [],
    perLeaf: { all: new Uint32Array(SLOTS), same: new Uint32Array(SLOTS) },
    order,
  };
  const want = Buffer.alloc(20);
  for await (const l of listing) {
    const slot = leafSlot(leafOf(l.path));
    if (slot >= 0) out.perLeaf.all[slot] = (out.perLeaf.all[slot] as number) + 1;
    const n = l.kind === 'blob' && set.length > 0 ? match(l) : -1;
    if (n < 0) continue;
    out.reused[n] = 1;
    out.count++;
  }
  return out;

  /** The set's index of the live file at the same path, when the sizes agree; -1 otherwise. */
  function match(l: ListedBlob): number {
    let found = -1;
    if (want.write(l.sha1, 'hex') !== 20) return found;
    set.find(order, want, 0, (n) => {
      if (found !== -1 || !set.isAt(n, l.path, l.sha1)) return;
      if (set.sizeOf(n) !== l.size) {
        found = -2;
        return;
      }
      if (!set.sameAttrs(n, l)) out.differ.push(n);
      else {
        const slot = set.leafSlot(n);
        if (slot >= 0) out.perLeaf.same[slot] = (out.perLeaf.same[slot] as number) + 1;
      }
      found = n;
    });
    return found;
  }
}

/**
 * Hard-links into `into` the matched files (`m.reused`) that `wanted` asks for, and takes the others out of
 * `m` (they are in place already, or not wanted). GNU cp links them thousands a process: doing it here a file
 * at a time (lstat, link, attributes, ~100 µs each on 2 cores) took 20 s for 200,000 files. A file deleted
 * meanwhile (the site still runs beside the staging directory) is simply not reused: it is fetched.
 */
export async function linkLive(
  set: BlobSet,
  m: LiveLinks,
  live: string,
  into: string,
  wanted: (n: number) => boolean,
): Promise<void> {
  const listFile = join(into, `.mbs-links-${randomBytes(6).toString('hex')}`);
  const list = new LineFile(listFile);
  const order = m.order;
  const want = Buffer.alloc(20);
  try {
    for (let n = 0; n < set.length; n++) {
      if (!m.reused[n]) continue;
      if (wanted(n)) await list.add(`${set.at(n).path}\0`);
      else {
        m.reused[n] = 0;
        m.count--;
      }
    }
    await list.finish();
    // The few cp could not link (gone meanwhile): not reused after all, fetched instead.
    for (const path of await cpLinks(live, into, listFile)) {
      const sha1 = path.slice(-40);
      if (want.write(sha1, 'hex') !== 20) continue;
      set.find(order, want, 0, (n) => {
        if (m.reused[n] && set.isAt(n, path, sha1)) {
          m.reused[n] = 0;
          m.count--;
        }
      });
    }
  } finally {
    list.abort();
    await rm(listFile, { force: true });
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
