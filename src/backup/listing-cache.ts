import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManifestBlobs } from '../archive/manifest.js';
import { LineFile } from '../common/line-file.js';
import type { Backend } from '../storage/backend.js';
import { isListable } from '../store/blob-list.js';
import { LeafTable, leafSlotIn } from '../store/leaf-table.js';

/**
 * The last committed snapshot's blob lines and its leaf directories' ctimes, on the state volume, so the next
 * backup lists again only the directories that changed since that snapshot's stop window (instead of every
 * file: 200,000 files took find ~1.5 s and this process as much again). Used only while that snapshot is still
 * at the target (its blobs are then all stored); any doubt, and the backup lists everything.
 */
export interface PreviousListing {
  snapshot: string;
  /** That window's scan began here, less a margin: a directory changed at or after it is listed again. */
  sinceMs: number;
  stamps: LeafTable;
  /** Leaf directories that held something else than blobs then. */
  mixed: string[];
  /** Its blob lines, as its blob list has them. */
  linesFile: string;
  /** The lines' count, bytes and mismatches (a line whose sha1 is not its name): copied whole when nothing changed. */
  totals?: { count: number; bytes: number; mismatches: ManifestBlobs['mismatches'] };
}

interface Pointer {
  version: 1;
  snapshot: string;
  sinceMs: number;
  mixed: string[];
  lines: string;
  stamps: string;
  totals?: PreviousListing['totals'];
}

/** Where one target's listings are kept: a directory per target (the location's hash), a file set per volume. */
export function listingDir(stateDir: string, location: string): string {
  const key = createHash('sha256').update(location).digest('hex').slice(0, 16);
  return join(stateDir, 'listings', key);
}

/** The previous listing of `volume`, or undefined (none, unreadable, or its snapshot no longer stored). */
export async function loadListing(
  dir: string,
  volume: string,
  backend: Backend,
): Promise<PreviousListing | undefined> {
  try {
    const p = JSON.parse(await readFile(join(dir, `${volume}.json`), 'utf8')) as Pointer;
    if (p.version !== 1 || !(await backend.stat(`${p.snapshot}/manifest.json`))) return undefined;
    const stamps = parseStamps(await readFile(join(dir, p.stamps)));
    return {
      snapshot: p.snapshot,
      sinceMs: p.sinceMs,
      stamps,
      mixed: p.mixed,
      linesFile: join(dir, p.lines),
      totals: p.totals,
    };
  } catch {
    return undefined;
  }
}

const NL = 10;
const TAB = 9;

/**
 * The stamps file (`<ctime ms>\t<leaf directory>\n` a line) into a table, read as bytes: a string a line
 * through readline was a 2nd backup's second-largest garbage at 200,000 blobs. A line it cannot read throws
 * (the caller then lists every file).
 */
export function parseStamps(buf: Buffer): LeafTable {
  const stamps = new LeafTable();
  for (let at = 0; at < buf.length; ) {
    const nl = buf.indexOf(NL, at);
    const tab = buf.indexOf(TAB, at);
    if (nl < 0 || tab < 0 || tab > nl) throw new Error('malformed stamps line');
    let ctime = 0;
    for (let i = at; i < tab; i++) {
      const c = buf[i] as number;
      if (c < 48 || c > 57) throw new Error('malformed stamps line');
      ctime = ctime * 10 + c - 48;
    }
    const slot = leafSlotIn(buf, tab + 1, nl);
    if (slot >= 0) stamps.setSlot(slot, ctime);
    else stamps.set(buf.toString('utf8', tab + 1, nl), ctime);
    at = nl + 1;
  }
  return stamps;
}

/** This run's listing, written beside the blob list; it replaces the previous one only once the snapshot is committed. */
export class ListingDraft {
  private readonly tag = randomBytes(6).toString('hex');
  private readonly lines: LineFile;
  private readonly linesName: string;
  private sealed: Promise<void> | undefined;

  private constructor(
    private readonly dir: string,
    private readonly volume: string,
    append: boolean,
  ) {
    this.linesName = `${volume}.${this.tag}.lines`;
    this.lines = new LineFile(join(dir, this.linesName), { append });
  }

  /**
   * `from`: a file of lines the draft starts with, copied by the kernel (a million lines through this
   * process were ~90 MB of buffers for the garbage collector).
   */
  static async open(dir: string, volume: string, from?: string): Promise<ListingDraft> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const draft = new ListingDraft(dir, volume, from !== undefined);
    if (from !== undefined)
      await copyFile(from, join(dir, draft.linesName)).catch((err: unknown) => {
        draft.lines.abort();
        throw err;
      });
    return draft;
  }

  add(text: string | Buffer): Promise<void> {
    return this.lines.add(text);
  }

  /** The lines written so far (complete on disk once seal() resolved). */
  get linesPath(): string {
    return join(this.dir, this.linesName);
  }

  /** No more lines: they are written out and the file closed (install() needs nothing more). */
  seal(): Promise<void> {
    this.sealed ??= this.lines.finish();
    return this.sealed;
  }

  /** After the commit: the lines, the window's ctimes and the mixed directories become the volume's listing. */
  async install(
    snapshot: string,
    sinceMs: number,
    stamps: LeafTable,
    mixed: Iterable<string>,
    totals: NonNullable<PreviousListing['totals']>,
  ): Promise<void> {
    await this.seal();
    const stampsName = `${this.volume}.${this.tag}.stamps`;
    // A line at a time through a batching file: 65,536 strings (1,000,000 blobs) joined at once were
    // ~13 MB of heap at the commit, then the backup's peak.
    const out = new LineFile(join(this.dir, stampsName));
    try {
      // A directory a line cannot name is left out: the next run sees it as new, and lists it again.
      for (const e of stamps.each()) if (isListable(e.path)) await out.add(`${e.ctimeMs}\t${e.path}\n`);
      await out.finish();
    } catch (err) {
      out.abort();
      throw err;
    }
    const pointer: Pointer = {
      version: 1,
      snapshot,
      sinceMs,
      mixed: [...mixed],
      lines: this.linesName,
      stamps: stampsName,
      totals,
    };
    const tmp = join(this.dir, `.${this.tag}.tmp`);
    await writeFile(tmp, JSON.stringify(pointer), { mode: 0o600 });
    await rename(tmp, join(this.dir, `${this.volume}.json`));
    // The files of earlier listings of this volume (and of runs that died before this point) go.
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(`${this.volume}.`) && name !== `${this.volume}.json` && !name.includes(this.tag))
        await rm(join(this.dir, name), { force: true });
    }
  }

  /** The run failed: the previous listing stays. */
  async discard(): Promise<void> {
    this.lines.abort();
    await rm(join(this.dir, this.linesName), { force: true });
  }
}
