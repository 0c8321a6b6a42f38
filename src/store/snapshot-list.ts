import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { fileChunks } from '../common/file-chunks.js';
import { LineFile } from '../common/line-file.js';
import type { Backend } from '../storage/backend.js';
import { type BlobListSummary, BlobListWriter } from './blob-list.js';
import type { StoreEncoding } from './encoding.js';
import { listKey } from './layout.js';
import { BASE_PREFIX, DELTA_LIST_HEADER, diffLists } from './list-delta.js';

/** Room for the directory lines beside the blob lines when the diff sizes its arrays. */
const LEAF_LINES = 65_536;

/** A shared base list, as a snapshot's manifest names it. */
export interface ListBase {
  sha256: string;
  storedBytes: number;
  /** Its blob lines. */
  count: number;
}

/** The base the last snapshot used, with its text (no header) kept in the state directory. */
export interface KeptBase extends ListBase {
  linesPath: string;
  /** The sha256 of that text: a copy changed since (a damaged state volume) is not diffed against. */
  textSha256: string;
  /** The last snapshot's whole text and its difference from this base: said again when the text is the same. */
  last?: LastList;
}

/** A snapshot's list by its whole text: the text's sha256, its blob count, and its delta's plain lines. */
export interface LastList {
  textSha256: string;
  count: number;
  /** The delta's lines (no header), and their sha256; none when the delta was empty (the text is the base's). */
  deltaPath?: string;
  deltaSha256?: string;
}

export interface SnapshotListResult {
  /** The snapshot's list file: its sha256 and size, and the snapshot's blob count and bytes. */
  summary: BlobListSummary;
  base: ListBase & { added: boolean };
  /**
   * A base this run wrote: stored before the manifest; its plain text (when `baseLinesPath` was given)
   * becomes the next run's KeptBase.
   */
  newBase?: { path: string; linesPath?: string; textSha256: string };
  /** This list by its text, for the next run (none without `deltaLinesPath`). */
  last?: LastList;
  /** `last` is the previous snapshot's, said again (its delta file is the one kept already). */
  again?: boolean;
}

/**
 * Lines a delta may have before a new base is written instead: a reader holds the paths a delta names in
 * memory (~100 bytes each), and a delta of an eighth of the base saves little. 4,096 at least, so that small
 * sites do not rewrite their base on every run.
 */
export function deltaLimit(baseCount: number): number {
  return Math.max(4096, Math.min(Math.floor(baseCount / 8), 32_768));
}

/**
 * Writes a snapshot's blob list to `path`: the difference from the base the last snapshot used when that
 * base is still stored and the difference is small, else a new base (spooled to `basePath`, its text to
 * `baseLinesPath`) and an empty difference naming it. `text` is the whole list (blob lines, then directory
 * lines, no header), readable again; `count` and `bytes` its blobs.
 */
export async function writeSnapshotList(o: {
  backend: Backend;
  encoding: StoreEncoding;
  /** `transient`: each chunk is let go before the next is asked for (it may be a reused buffer). */
  text: (transient: boolean) => AsyncIterable<Buffer | string>;
  count: number;
  bytes: number;
  path: string;
  basePath: string;
  /** Where the text of a new base is kept for the next run's diff; none (a passphrase run): not written. */
  baseLinesPath?: string;
  /** Where this run's delta lines are kept for the next run (`last`); none: no `last`. */
  deltaLinesPath?: string;
  previous?: KeptBase;
  /**
   * The caller saw nothing change since the last snapshot (its listing reused whole, nothing listed again):
   * the text is hashed first and, when it is the last snapshot's, that snapshot's delta is written again
   * without a diff (265,536 lines: ~0.3 s of a 1.5 s run). A guess only: the hash decides.
   */
  likelySame?: boolean;
}): Promise<SnapshotListResult> {
  const prev = o.previous;
  if (prev && (await o.backend.stat(listKey(prev.sha256)))?.size === prev.storedBytes) {
    const last = prev.last;
    if (o.likelySame && last?.count === o.count && (await sha256Of(o.text(true))) === last.textSha256) {
      const summary = await sayAgain(o.path, o.encoding, header(prev), last);
      if (summary) {
        const r = { ...summary, count: o.count, bytes: o.bytes };
        return { summary: r, base: { ...baseOf(prev), added: false }, last, again: true };
      }
    }
    const w = new BlobListWriter(o.path, o.encoding, header(prev));
    // The kept text is checked as the diff first reads it: a line changed there would go unwritten.
    const kept = createHash('sha256');
    let reads = 0;
    const base = () => {
      const file = fileChunks(prev.linesPath);
      return reads++ > 0 ? file : hashed(file, kept);
    };
    // The current text is read once by the diff: hashed there, for the next run's `last`.
    const current = createHash('sha256');
    const delta = o.deltaLinesPath === undefined ? undefined : new LineFile(o.deltaLinesPath);
    const deltaHash = createHash('sha256');
    try {
      const r = await diffLists({
        base,
        current: () => hashed(o.text(true), current),
        limit: deltaLimit(prev.count),
        out: async (line) => {
          await w.addLine(line);
          if (!delta) return;
          deltaHash.update(line);
          await delta.add(line);
        },
        // Blob lines, and a directory line for each leaf directory (at most 65,536 an area in practice).
        expected: { base: prev.count + LEAF_LINES, current: o.count + LEAF_LINES },
      });
      // Over the limit, or a count that does not add up (a hash collision): a new base, which is always right.
      if (r && r.blobs === o.count && kept.digest('hex') === prev.textSha256) {
        await delta?.finish();
        const summary = { ...(await w.finish()), count: o.count, bytes: o.bytes };
        const textSha256 = current.digest('hex');
        const next: LastList | undefined =
          o.deltaLinesPath === undefined
            ? undefined
            : r.lines === 0
              ? { textSha256, count: o.count }
              : {
                  textSha256,
                  count: o.count,
                  deltaPath: o.deltaLinesPath,
                  deltaSha256: deltaHash.digest('hex'),
                };
        return { summary, base: { ...baseOf(prev), added: false }, ...(next ? { last: next } : {}) };
      }
      w.abort();
      delta?.abort();
    } catch (err) {
      w.abort();
      delta?.abort();
      throw err;
    }
    await rm(o.path, { force: true });
  }
  const bw = new BlobListWriter(o.basePath, o.encoding);
  const plain = o.baseLinesPath === undefined ? undefined : new LineFile(o.baseLinesPath);
  const text = createHash('sha256');
  try {
    // The writers may hold a chunk until it is written: fresh ones.
    for await (const chunk of o.text(false)) {
      await bw.addLines(chunk, 0, 0);
      await plain?.add(chunk);
      text.update(chunk);
    }
    await plain?.finish();
  } catch (err) {
    bw.abort();
    plain?.abort();
    throw err;
  }
  const b = await bw.finish();
  const base = { sha256: b.sha256, storedBytes: b.storedBytes, count: o.count };
  const w = new BlobListWriter(o.path, o.encoding, header(base));
  const summary = { ...(await w.finish()), count: o.count, bytes: o.bytes };
  const textSha256 = text.digest('hex');
  return {
    summary,
    base: { ...base, added: true },
    newBase: { path: o.basePath, linesPath: o.baseLinesPath, textSha256 },
    // The text is the base's: an empty delta.
    ...(o.deltaLinesPath ? { last: { textSha256, count: o.count } } : {}),
  };
}

async function* hashed<T extends Buffer | string>(source: AsyncIterable<T>, hash: Hash): AsyncGenerator<T> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

async function sha256Of(source: AsyncIterable<Buffer | string>): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of source) h.update(chunk);
  return h.digest('hex');
}

/**
 * The list `header` + the last snapshot's delta lines, written to `path`; null (nothing left there) when the
 * kept lines are not what was kept (a damaged state volume): the caller diffs instead.
 */
async function sayAgain(
  path: string,
  encoding: StoreEncoding,
  head: string,
  last: LastList,
): Promise<Omit<BlobListSummary, 'count' | 'bytes'> | null> {
  const w = new BlobListWriter(path, encoding, head);
  try {
    if (last.deltaPath) {
      const h = createHash('sha256');
      // Fresh chunks: the writer may hold one until it is written.
      for await (const chunk of createReadStream(last.deltaPath)) {
        h.update(chunk as Buffer);
        await w.addLine(chunk as Buffer);
      }
      if (h.digest('hex') !== last.deltaSha256) {
        w.abort();
        await rm(path, { force: true });
        return null;
      }
    }
    return await w.finish();
  } catch (err) {
    w.abort();
    await rm(path, { force: true });
    // Gone since it was kept: diffed instead.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function baseOf(b: ListBase): ListBase {
  return { sha256: b.sha256, storedBytes: b.storedBytes, count: b.count };
}

function header(b: ListBase): string {
  return `${DELTA_LIST_HEADER}\n${BASE_PREFIX}${b.sha256}\t${b.count}\n`;
}
