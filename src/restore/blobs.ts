import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  link,
  lstat,
  mkdir,
  mkdtemp,
  rename,
  rm,
  rmdir,
  utimes,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getCodec } from '../archive/codec.js';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError, throwFirstCause } from '../common/errors.js';
import { fileTime, secondsTime } from '../common/file-time.js';
import { eachInParallel, inParallel } from '../common/parallel.js';
import { collect, exited } from '../common/processes.js';
import type { EncryptionConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';
import type { BlobEntry, DirEntry } from '../store/blob-list.js';
import { locatableSet, locateBlobs, locateProblems } from '../store/blob-locate.js';
import { BlobSet } from '../store/blob-set.js';
import { readingEncoding, type StoreEncoding } from '../store/encoding.js';
import type { PackRecord } from '../store/index-file.js';
import { BLOB_AREAS, blobPath, isBlobPath } from '../store/layout.js';
import { type LeafSet, LeafTable, leafOf, leafSlot } from '../store/leaf-table.js';
import { listBlobs, listLeafDirs } from '../store/listing.js';
import { fetchFrames, framedRuns } from '../store/pack-frames.js';
import { type UntarredMember, untarPack } from '../store/pack-untar.js';
import { snapshotBlobs, storedPacks } from '../store/snapshot-blobs.js';
import { flushFileSystem } from '../volume/flush.js';
import type { LeafSwap } from '../volume/leaf-swap.js';
import { createLeafDirs, makeLeafDirs } from './leaf-dirs.js';
import { type LeafPlan, leafStamps, leavesToSwap, planLeaves } from './leaf-plan.js';
import { linkLive, matchLive } from './link-live.js';

/** What a restore of incremental volumes works from: each volume's blob set, located in `packs`. */
export interface RestoreBlobs {
  /** The packs the sets' pack numbers refer to. */
  packs: PackRecord[];
  encoding: StoreEncoding;
  sets: Map<string, BlobSet>;
  /**
   * Each volume's leaf directories with their owners, modes and times, when its blob list names them
   * (format 2; else the tarball has them). A typed table, not 65,536 objects and their path strings.
   */
  dirs: Map<string, LeafTable>;
}

/** Reads one snapshot volume's blob list (its sha256 and count checked) into a compact set; `dirs` gets its directories. */
export async function readBlobSet(
  backend: Backend,
  manifest: Manifest,
  v: ManifestVolume,
  encryption: EncryptionConfig | undefined,
  dirs?: LeafTable,
): Promise<BlobSet> {
  const set = new BlobSet(v.blobs?.count);
  // The table's ctimes are not used here: 0.
  const onDir = dirs && ((d: DirEntry) => dirs.set(d.path, 0, d));
  for await (const b of snapshotBlobs(backend, manifest, v, encryption, onDir)) set.add(b);
  return set;
}

/**
 * Before anything changes: each incremental volume's blob list is read and checked, and every blob it names
 * must be indexed in a pack that exists with its recorded size. The packs' content is checked as they are
 * unpacked, into the staging directory (a damaged pack leaves the volume as it was).
 */
export async function verifyBlobs(
  backend: Backend,
  manifest: Manifest,
  volumes: ManifestVolume[],
  encryption: EncryptionConfig | undefined,
  log: Logger,
): Promise<RestoreBlobs | undefined> {
  const withBlobs = volumes.filter((v) => v.blobs);
  if (withBlobs.length === 0) return undefined;
  const t0 = Date.now();
  const encoding = readingEncoding(getCodec(manifest.codec), encryption);
  const stored = await storedPacks(backend);
  const sets = new Map<string, BlobSet>();
  const dirs = new Map<string, LeafTable>();
  for (const v of withBlobs) {
    const leaves = new LeafTable();
    sets.set(v.name, await readBlobSet(backend, manifest, v, encryption, leaves));
    dirs.set(v.name, leaves);
  }
  // The sets hold where each blob is: the store's whole index is never in memory beside them.
  const { packs } = await locateBlobs(backend, encoding, [...sets.values()].map(locatableSet), stored);
  for (const [name, set] of sets) {
    const problems = locateProblems(
      set.length,
      { packOf: (i) => set.packOf(i), hex: (i) => set.sha1(i) },
      packs,
      stored,
    );
    if (problems.length > 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `snapshot ${manifest.id}, volume ${name}: ${problems.length} blob(s) cannot be restored (${problems.slice(0, 3).join('; ')}); nothing was changed`,
        'run `verify` to see every damaged snapshot; restore another snapshot',
      );
    }
    log.info(
      { step: 'verify', volume: name, blobs: set.length, ms: Date.now() - t0 },
      `verified ${name}'s blob list: ${set.length} blob(s), all in the store`,
    );
  }
  return { packs, encoding, sets, dirs };
}

export interface PlaceInput {
  backend: Backend;
  store: RestoreBlobs;
  set: BlobSet;
  /** The leaf directories the blob list names (format 2), made with their owners, modes and times. */
  dirs?: LeafTable;
  /** The directory being filled (the staging directory, or the emptied volume). */
  into: string;
  /** `into` is a staging directory, discarded whole if anything fails: packs may unpack straight into it. */
  staged?: boolean;
  /** The volume's current data, when it is still there beside `into`: blobs found there are reused. */
  live: string | null;
  /** Only the blobs of these leaf directories (the window's second look at kept ones that changed). */
  only?: LeafSet;
  signal?: AbortSignal;
  /** The terminal's progress line: each blob's size once it is in place, and the end of the placing. */
  progress?: { placed(bytes: number): void; done(): void };
}

export interface PlaceResult {
  reused: number;
  fetched: number;
  fetchedBytes: number;
  packs: number;
  /** Stored bytes of packs read: whole packs, or only some of their frames (`framedPacks` of them). */
  packBytes: number;
  framedPacks: number;
}

const placedNothing = (): PlaceResult => ({
  reused: 0,
  fetched: 0,
  fetchedBytes: 0,
  packs: 0,
  packBytes: 0,
  framedPacks: 0,
});

/**
 * Puts a snapshot's blobs into `into`: a file the live dataroot holds under the same path with the same size
 * is hard-linked (Moodle never rewrites a blob, so same name and size is the same content); every other blob
 * is unpacked from its pack by tar and put in place only once the pack's sha256 matched its id (each blob's
 * SHA-1 was checked when it was stored). Owner, mode and mtime are the snapshot's. Only the snapshot's blobs
 * are written, not the rest of a pack. Beside the live dataroot, a leaf directory it holds exactly as the
 * snapshot does is not built at all: it stays where it is (`plan`, restore/leaf-plan.ts).
 */
export async function placeBlobs(i: PlaceInput): Promise<PlaceResult & { plan?: LeafPlan }> {
  const result: PlaceResult & { plan?: LeafPlan } = placedNothing();
  // The blobs to fetch, one byte each; grouped by pack afterwards in one typed array (JS arrays of a
  // million indices were ~12 MB of heap).
  const toFetch = new Uint8Array(i.set.length);
  const dirs = new DirTimes(i.into);
  await dirs.remember(''); // the packs unpack in a directory of their own there
  const all = i.dirs ?? new LeafTable();
  // Beside the live dataroot, with the list's leaf directories (format 2): the ones it holds as the snapshot
  // does may stay where they are (leaf-plan.ts). Their times are taken before their files are listed.
  const base = i.live && i.staged && !i.only ? await leafStamps(i.live, i.into) : null;
  const listing =
    i.live && (i.only ? listLeafDirs(i.live, i.only) : listBlobs(i.live, BLOB_AREAS, { allNames: true }));
  const matched = listing ? await matchLive(i.set, listing) : undefined;
  const plan = base && matched ? await planLeaves(base, i.set, all, matched, i.into) : null;
  if (plan) result.plan = plan;
  // What is not placed here: the kept leaf directories' blobs (in place already), or, for the window's second
  // look (`only`), those of every other leaf directory.
  const skip = new Uint8Array(i.set.length);
  let leaves = all;
  if (plan || i.only) {
    const only = i.only;
    const out = (s: number, path: () => string) =>
      plan ? s >= 0 && plan.keep[s] === 1 : !only?.hasSlot(s, path);
    for (let n = 0; n < i.set.length; n++) {
      if (!out(i.set.leafSlot(n), () => leafOf(i.set.at(n).path))) continue;
      skip[n] = 1;
      if (!plan) continue;
      result.reused++;
      i.progress?.placed(i.set.sizeOf(n));
    }
    leaves = new LeafTable();
    for (const e of all.each())
      if (!out(leafSlot(e.path), () => e.path))
        leaves.set(
          e.path,
          e.ctimeMs,
          e.hasAttrs ? { mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs } : undefined,
        );
  }
  // Without directory lines the tarball made every leaf directory: a kept one's empty copy goes (its
  // parent's times are kept), so that the swap leaves the live one where it is.
  if (plan?.fromTarball) {
    const gone: string[] = [];
    for (const e of plan.leaves.each()) if (plan.keep[leafSlot(e.path)]) gone.push(e.path);
    await eachInParallel(gone.values(), PARALLEL, (path) => dirs.remember(dirname(path)));
    await eachInParallel(gone.values(), PARALLEL, (path) => rmdir(join(i.into, path)));
  }
  // The leaf directories are the list's, not the tarball's: made first (their parents' times kept), their
  // owners, modes and times set once every file is in.
  await eachInParallel(leaves.keys(), PARALLEL, (path) => dirs.remember(dirname(path)));
  await createLeafDirs(i.into, leaves, i.signal);
  // Without directory lines (format 1) the tarball gave the leaf directories their times: kept as they are.
  // Every directory's time first (nothing placed yet), then the files, many at once: one await after the
  // other cost ~0.45 ms a blob (20,000 reused blobs: 9 s of a restore), the file system's latency, not work.
  if (all.size === 0)
    await inParallel(i.set.length, PARALLEL, async (n) => {
      i.signal?.throwIfAborted();
      await dirs.remember(dirname(i.set.at(n).path));
    });
  // The live dataroot's files, linked by GNU cp in bulk; their attributes set only where they differ.
  if (i.live && matched) {
    const live = i.live;
    await linkLive(i.set, matched, live, i.into, (n) => !skip[n]);
    await inParallel(matched.differ.length, PARALLEL, async (k) => {
      const n = matched.differ[k] as number;
      if (matched.reused[n]) await attributes(join(i.into, i.set.at(n).path), i.set.at(n));
    });
    result.reused += matched.count;
    // The progress line counts files: one call each (only on a terminal).
    if (i.progress)
      for (let n = 0; n < i.set.length; n++) if (matched.reused[n]) i.progress.placed(i.set.at(n).size);
  }
  await inParallel(i.set.length, PARALLEL, async (n) => {
    i.signal?.throwIfAborted();
    if (skip[n] || matched?.reused[n]) return;
    const b = i.set.at(n);
    // A file not at its own place (a corrupt one's) is not among find's: looked at here.
    const own = b.path === blobPath(b.sha1, b.path.startsWith('trashdir/') ? 'trashdir' : 'filedir');
    if (i.live && !own && (await reuse(join(i.live, b.path), join(i.into, b.path), b))) {
      result.reused++;
      i.progress?.placed(b.size);
      return;
    }
    toFetch[n] = 1;
  });
  const { numbers, starts, order } = byPack(i.set, toFetch, i.store.packs.length);
  // Two packs at a time: one unpacks (tar and the decompressor) while the other's files are put in place.
  await inParallel(numbers.length, 2, async (p) => {
    const number = numbers[p] as number;
    // One pack's blobs (a few thousand): the first index of each content, the rest only for a content twice.
    const wanted = new Map<string, number>();
    const twins = new Map<string, number[]>();
    for (const n of order.subarray(starts[number], starts[number + 1])) {
      const sha1 = i.set.sha1(n);
      const first = wanted.get(sha1);
      if (first === undefined) wanted.set(sha1, n);
      else twins.set(sha1, [...(twins.get(sha1) ?? [first]), n]);
    }
    i.signal?.throwIfAborted();
    const pack = i.store.packs[number] as PackRecord;
    const packId = pack.id;
    // Into a staging directory the pack is unpacked by tar at the blobs' places directly: no rename a file
    // (~50 µs each on this disk). A damaged pack then fails the restore and the staging directory goes whole.
    const plan = i.staged ? inPlacePlan(i.set, wanted, twins) : null;
    if (plan) {
      const members = await unpack(i, pack, wanted, result, i.into, {
        listDir: i.into,
        placeAs: plan.placeAs,
      });
      const blobs = [...wanted];
      await inParallel(blobs.length, PARALLEL, async (j) => {
        const [sha1, first] = blobs[j] as (typeof blobs)[number];
        const m = members.get(sha1);
        if (!m) throw new SidecarError('INTEGRITY_FAILED', `pack ${packId} does not hold blob ${sha1}`);
        const primary = plan.primary.get(sha1) ?? first;
        const from = join(i.into, i.set.at(primary).path);
        // The same content at other paths too (filedir/ and trashdir/): copies, each with its own attributes.
        for (const n of [primary, ...(twins.get(sha1) ?? []).filter((k) => k !== primary)]) {
          const b = i.set.at(n);
          const to = join(i.into, b.path);
          if (n !== primary) await inDir(to, () => copyFile(from, to));
          await settle(to, b, m, n !== primary);
          result.fetched++;
          result.fetchedBytes += b.size;
          i.progress?.placed(b.size);
        }
      });
      result.packs++;
      return;
    }
    const tmp = await mkdtemp(join(i.into, '.mbs-pack-'));
    try {
      const members = await unpack(i, pack, wanted, result, tmp);
      // The pack's sha256 matched its id, or each blob's SHA-1 its name (by frames): every blob is the one stored.
      const blobs = [...wanted];
      await inParallel(blobs.length, PARALLEL, async (j) => {
        const [sha1, first] = blobs[j] as (typeof blobs)[number];
        const ns = twins.get(sha1) ?? [first];
        const m = members.get(sha1);
        if (!m) throw new SidecarError('INTEGRITY_FAILED', `pack ${packId} does not hold blob ${sha1}`);
        const from = join(tmp, sha1);
        for (const [k, n] of ns.entries()) {
          const b = i.set.at(n);
          const to = join(i.into, b.path);
          const last = k === ns.length - 1;
          await inDir(to, () => (last ? rename(from, to) : copyFile(from, to)));
          await settle(to, b, m, !last);
          result.fetched++;
          result.fetchedBytes += b.size;
          i.progress?.placed(b.size);
        }
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    result.packs++;
  });
  await makeLeafDirs(i.into, leaves, i.signal);
  await dirs.restore();
  i.progress?.done();
  return result;
}

/**
 * One pack's wanted blobs (sha1 → an entry of the set) into `dir`, flat as `<sha1>` or, `inPlace`, at their
 * places (untarPack): by its frames when few of them are needed (store/pack-frames.ts: each blob's SHA-1
 * checked), else the whole pack through tar (the pack's sha256 checked). What was read is added to `result`.
 */
async function unpack(
  i: PlaceInput,
  pack: PackRecord,
  wanted: ReadonlyMap<string, number>,
  result: PlaceResult,
  dir: string,
  inPlace?: { listDir: string; placeAs: ReadonlyMap<string, string> },
): Promise<Map<string, UntarredMember>> {
  const blobs = [...wanted].map(([sha1, n]) => ({ sha1, offset: i.set.offsetOf(n), size: i.set.sizeOf(n) }));
  const runs = framedRuns(i.backend, pack, blobs, i.store.encoding);
  if (!runs) {
    result.packBytes += pack.storedSize;
    const { backend, signal } = i;
    return untarPack({
      backend,
      encoding: i.store.encoding,
      pack,
      sha1s: wanted.keys(),
      dir,
      signal,
      inPlace,
    });
  }
  const dest = (sha1: string) => join(dir, inPlace ? (inPlace.placeAs.get(sha1) ?? blobPath(sha1)) : sha1);
  const framed = blobs.map((b) => ({ ...b, offset: b.offset as number, dest: dest(b.sha1) }));
  const got = await fetchFrames({
    backend: i.backend,
    pack,
    runs,
    blobs: framed,
    encoding: i.store.encoding,
    signal: i.signal,
  });
  result.packBytes += got.bytesRead;
  result.framedPacks++;
  return got.members;
}

/**
 * Blobs of one pack placed elsewhere than their own place or its trashdir/ twin at most: a corrupt file's
 * name, a `--transform` each, which tar matches against every member.
 */
const PLACE_AS_MAX = 64;

/**
 * Where a pack's contents go when it unpacks in place: each to its own place (`filedir/ab/cd/<sha1>`) when
 * the snapshot has it there, else to its first path, told to tar (`placeAs`; `primary` names that entry).
 * Null when such a path is not one tar can be told, or there are too many: the pack then unpacks flat.
 */
function inPlacePlan(set: BlobSet, wanted: Map<string, number>, twins: Map<string, number[]>) {
  const placeAs = new Map<string, string>();
  const primary = new Map<string, number>();
  let others = 0;
  for (const [sha1, first] of wanted) {
    const own = blobPath(sha1);
    const ns = twins.get(sha1) ?? [first];
    const at = ns.find((n) => set.at(n).path === own);
    if (at !== undefined) {
      if (at !== first) primary.set(sha1, at);
      continue;
    }
    const path = set.at(first).path;
    if (!isBlobPath(path)) return null;
    if (path !== blobPath(sha1, 'trashdir') && ++others > PLACE_AS_MAX) return null;
    placeAs.set(sha1, path);
  }
  return { placeAs, primary };
}

/**
 * The marked entries of a located set grouped by pack (a counting sort): pack `p`'s are
 * `order[starts[p] … starts[p + 1]]`; `numbers` lists the packs that have any.
 */
function byPack(set: BlobSet, marked: Uint8Array, packs: number) {
  const starts = new Uint32Array(packs + 1);
  for (let n = 0; n < set.length; n++) {
    if (!marked[n]) continue;
    const p = set.packOf(n);
    if (p < 0) throw new SidecarError('INTEGRITY_FAILED', `blob ${set.sha1(n)} is in no pack`);
    starts[p + 1] = (starts[p + 1] ?? 0) + 1;
  }
  for (let p = 1; p <= packs; p++) starts[p] = (starts[p] ?? 0) + (starts[p - 1] ?? 0);
  const order = new Uint32Array(starts[packs] ?? 0);
  const fill = starts.slice(0, packs);
  for (let n = 0; n < set.length; n++) {
    if (!marked[n]) continue;
    const p = set.packOf(n);
    order[fill[p] ?? 0] = n;
    fill[p] = (fill[p] ?? 0) + 1;
  }
  const numbers: number[] = [];
  for (let p = 0; p < packs; p++) if ((starts[p + 1] ?? 0) > (starts[p] ?? 0)) numbers.push(p);
  return { numbers, starts, order };
}

/** Runs `op` (which creates `to`), making `to`'s directory first only when it is missing (the usual case
 * in a staging directory is that the tarball made it: one call saved a file). */
async function inDir<T>(to: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dirname(to), { recursive: true });
    return op();
  }
}

/** File-system calls in flight at once while blobs are placed (libuv runs 4 at a time; more queue). */
const PARALLEL = 16;

/**
 * The directories' times as the tarball left them: adding files changes a directory's mtime, and a restore
 * gives back the snapshot's (Moodle does not care; a user comparing trees does). Kept compactly: a million
 * blobs sit in ~65,000 directories, and a Map of absolute paths to pairs of Dates held ~30 MB of heap.
 */
class DirTimes {
  /** Directory relative to the root → its slot in `times`, or -1 when it was not there. */
  private readonly slots = new Map<string, number>();
  /** atime and mtime (ms) of each slot. */
  private times = new Float64Array(0);
  private n = 0;

  constructor(private readonly root: string) {}

  async remember(rel: string): Promise<void> {
    if (this.slots.has(rel)) return;
    this.slots.set(rel, -1); // claimed before the await: a parallel caller does not lstat it again
    const st = await lstat(join(this.root, rel)).catch(() => null);
    if (!st) return;
    if (2 * this.n + 2 > this.times.length) {
      const grown = new Float64Array(Math.max(1024, 2 * this.times.length));
      grown.set(this.times);
      this.times = grown;
    }
    this.times[2 * this.n] = st.atimeMs;
    this.times[2 * this.n + 1] = st.mtimeMs;
    this.slots.set(rel, this.n++);
  }

  async restore(): Promise<void> {
    const all = [...this.slots].filter((e) => e[1] >= 0);
    await inParallel(all.length, PARALLEL, async (k) => {
      const [rel, slot] = all[k] as (typeof all)[number];
      const [atime = 0, mtime = 0] = this.times.subarray(2 * slot, 2 * slot + 2);
      await utimes(join(this.root, rel), secondsTime(atime / 1000), secondsTime(mtime / 1000));
    });
  }
}

/** Links the live file into place when it is the same blob (same name, same size); false when it is not there. */
async function reuse(from: string, to: string, b: BlobEntry): Promise<boolean> {
  const st = await lstat(from).catch(() => null);
  if (!st?.isFile() || st.size !== b.size) return false;
  const linked = await inDir(to, () => link(from, to)).then(
    () => true,
    async (err: NodeJS.ErrnoException) => {
      // Moodle deleted it meanwhile (staging ahead runs beside a live site): fetch it from its pack.
      if (err.code === 'ENOENT') return false;
      // A file system without hard links (or across devices): copy instead.
      if (err.code !== 'EXDEV' && err.code !== 'EPERM' && err.code !== 'EMLINK') throw err;
      await copyFile(from, to);
      return true;
    },
  );
  if (!linked) return false;
  if (
    st.uid !== b.uid ||
    st.gid !== b.gid ||
    (st.mode & 0o7777) !== b.mode ||
    Math.trunc(st.mtimeMs) !== b.mtimeMs
  )
    await attributes(to, b);
  return true;
}

/** Owners are set only as root; asked once (a system call each time: 260,000 in a 200,000-file restore). */
const AS_ROOT = process.getuid?.() === 0;

/**
 * A fetched blob's owner, mode and time are the snapshot's: tar gave it the pack's (those of the file when it
 * was first stored, in whole seconds), so only what differs is set; a copy got none of them.
 */
async function settle(path: string, b: BlobEntry, m: UntarredMember, copied: boolean): Promise<void> {
  if (copied || m.mode !== (b.mode & 0o7777) || (AS_ROOT && (m.uid !== b.uid || m.gid !== b.gid)))
    return attributes(path, b);
  if (copied || m.mtimeS * 1000 !== b.mtimeMs) await utimes(path, fileTime(b.mtimeMs), fileTime(b.mtimeMs));
}

async function attributes(path: string, b: Omit<BlobEntry, 'sha1' | 'size'>): Promise<void> {
  if (AS_ROOT) await chown(path, b.uid, b.gid);
  await chmod(path, b.mode);
  await utimes(path, fileTime(b.mtimeMs), fileTime(b.mtimeMs));
}

export interface DockerPutInput extends Omit<PlaceInput, 'into' | 'live'> {
  /** Writes a tar stream (rooted at ./) into the volume: putArchive through a helper container. */
  put(tar: Readable): Promise<void>;
  /** A local directory with room for the blobs (the spool). */
  scratch: string;
}

/**
 * The archive-API path (the volume is not a directory the sidecar can write): the blobs are placed in a
 * local scratch directory, then put into the emptied volume as one tar of files only, before the tarball
 * (whose directory entries then give the directories their owners, modes and times).
 */
export async function putBlobsThroughDocker(i: DockerPutInput): Promise<PlaceResult> {
  await mkdir(i.scratch, { recursive: true, mode: 0o700 });
  const tmp = await mkdtemp(join(i.scratch, 'blobs-'));
  const list = `${tmp}.files`;
  try {
    const placed = await placeBlobs({ ...i, into: tmp, live: null });
    // Streamed in batches: a million paths as one array and one string were ~140 MB of heap.
    const set = i.set;
    await pipeline(
      Readable.from(
        (function* () {
          // The leaf directories first (their owners and modes), then the files.
          for (const path of i.dirs?.keys() ?? []) yield `./${path}\n`;
          for (let n = 0; n < set.length; n += 1024) {
            let chunk = '';
            for (let k = n; k < Math.min(set.length, n + 1024); k++) chunk += `./${set.at(k).path}\n`;
            yield chunk;
          }
        })(),
      ),
      createWriteStream(list, { mode: 0o600 }),
    );
    const tar = spawn(
      'tar',
      ['-C', tmp, '-c', '--numeric-owner', '--format=gnu', '--no-recursion', '-T', list, '-f', '-'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const stderr = collect(tar.stderr);
    const done = exited(tar, 'tar', stderr);
    const put = i.put(tar.stdout).catch((err: unknown) => {
      tar.kill('SIGKILL'); // nobody reads its output any more
      throw err;
    });
    throwFirstCause(await Promise.allSettled([put, done]));
    return placed;
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await rm(list, { force: true });
  }
}

export interface WithBlobsInput extends Omit<DockerPutInput, 'put'> {
  dir: string | null;
  put: DockerPutInput['put'];
  volume: string;
  log: Logger;
}

/** A volume's extract with its blobs, and what its swap needs to know (see StagedInput in mount.ts). */
export interface BlobsExtract {
  extract(into: string | null): Promise<TarStats | undefined>;
  beforeSwap(): Promise<LeafSwap | undefined>;
}

/**
 * A volume's extract with its blobs: into a directory, the tarball first and then the blobs (reused from
 * the live data beside a staging directory, else fetched); through Docker, the blobs first. Beside the live
 * data, the leaf directories it holds as the snapshot does stay in place: `beforeSwap` (stack stopped) looks
 * again at those and names what leaves the live blob areas.
 */
export function withBlobs(
  tarball: (into: string | null) => Promise<TarStats | undefined>,
  i: WithBlobsInput,
): BlobsExtract {
  let staged: { into: string; plan: LeafPlan } | undefined;
  const extract = async (to: string | null) => {
    const t0 = Date.now();
    staged = undefined;
    if (!to) {
      const placed = await putBlobsThroughDocker(i);
      i.log.info(
        { step: 'restore', volume: i.volume, ...counts(placed), ms: Date.now() - t0 },
        `${i.volume}: ${placed.fetched} blob(s) put through Docker`,
      );
      return tarball(to);
    }
    const stats = await tarball(to);
    // Staged: the live dataroot is still beside the staging directory, and its blobs are reused.
    const beside = to !== i.dir;
    const placed = await placeBlobs({ ...i, into: to, live: beside ? i.dir : null, staged: beside });
    if (placed.plan) staged = { into: to, plan: placed.plan };
    const kept = placed.plan ? `, ${placed.plan.kept} leaf director(ies) left in place` : '';
    i.log.info(
      {
        step: 'restore',
        volume: i.volume,
        ...counts(placed),
        keptLeaves: placed.plan?.kept,
        ms: Date.now() - t0,
      },
      `${i.volume}: ${placed.reused} blob(s) reused${kept}, ${placed.fetched} fetched from ${placed.packs} pack(s)${packsRead(placed)}`,
    );
    return stats;
  };
  const beforeSwap = async (): Promise<LeafSwap | undefined> => {
    if (!staged || !i.dir) return undefined;
    const t0 = Date.now();
    const { into, plan } = staged;
    const live = i.dir;
    const swap = await leavesToSwap(plan, live, into, async (only) => {
      const { progress: _, ...rest } = i;
      await placeBlobs({ ...rest, dirs: plan.leaves, into, live, staged: true, only });
      await flushFileSystem(into);
    });
    i.log.info(
      { step: 'restore', volume: i.volume, out: swap.out.length, rebuilt: swap.rebuilt, ms: Date.now() - t0 },
      `${i.volume}: ${swap.out.length} entr(ies) of its blob areas to swap out, ${swap.rebuilt} leaf director(ies) changed since the look before the stop`,
    );
    return { areas: swap.areas, out: swap.out };
  };
  return { extract, beforeSwap };
}

/** A placing's figures for the log. */
const counts = (p: PlaceResult): PlaceResult => ({
  reused: p.reused,
  fetched: p.fetched,
  fetchedBytes: p.fetchedBytes,
  packs: p.packs,
  packBytes: p.packBytes,
  framedPacks: p.framedPacks,
});

/** How much of the packs a restore read, for its log line: ` (12.0 MB read, 3 by frames)`. */
function packsRead(p: PlaceResult): string {
  if (p.packs === 0) return '';
  const framed = p.framedPacks > 0 ? `, ${p.framedPacks} of them by frames` : '';
  return ` (${(p.packBytes / 1e6).toFixed(1)} MB read${framed})`;
}
