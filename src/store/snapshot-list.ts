import { createHash, type Hash } from 'node:crypto';
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
  previous?: KeptBase;
}): Promise<SnapshotListResult> {
  const prev = o.previous;
  if (prev && (await o.backend.stat(listKey(prev.sha256)))?.size === prev.storedBytes) {
    const w = new BlobListWriter(o.path, o.encoding, header(prev));
    // The kept text is checked as the diff first reads it: a line changed there would go unwritten.
    const kept = createHash('sha256');
    let reads = 0;
    const base = () => {
      const file = fileChunks(prev.linesPath);
      return reads++ > 0 ? file : hashed(file, kept);
    };
    try {
      const r = await diffLists({
        base,
        current: () => o.text(true),
        limit: deltaLimit(prev.count),
        out: (line) => w.addLine(line),
        // Blob lines, and a directory line for each leaf directory (at most 65,536 an area in practice).
        expected: { base: prev.count + LEAF_LINES, current: o.count + LEAF_LINES },
      });
      // Over the limit, or a count that does not add up (a hash collision): a new base, which is always right.
      if (r && r.blobs === o.count && kept.digest('hex') === prev.textSha256) {
        const summary = { ...(await w.finish()), count: o.count, bytes: o.bytes };
        return { summary, base: { ...baseOf(prev), added: false } };
      }
      w.abort();
    } catch (err) {
      w.abort();
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
  return {
    summary,
    base: { ...base, added: true },
    newBase: { path: o.basePath, linesPath: o.baseLinesPath, textSha256: text.digest('hex') },
  };
}

async function* hashed(source: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

function baseOf(b: ListBase): ListBase {
  return { sha256: b.sha256, storedBytes: b.storedBytes, count: b.count };
}

function header(b: ListBase): string {
  return `${DELTA_LIST_HEADER}\n${BASE_PREFIX}${b.sha256}\t${b.count}\n`;
}
