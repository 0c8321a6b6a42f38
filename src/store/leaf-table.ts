import { BLOB_AREAS } from './layout.js';

/**
 * The leaf directories of a dataroot's blob areas (`filedir/ab/cd`), kept in typed arrays indexed by their
 * name: area × 65,536 + ab × 256 + cd. A million blobs sit in all 65,536 of a area's leaf directories, and as
 * Maps and Sets of path strings (with each directory's attributes as an object) the window's tables held
 * ~15 MB of heap, the find records their paths were sliced from included; these hold ~3 MB, no string a
 * directory. A name that is not two lower-case hex digits (not Moodle's) is kept in a Map beside them.
 */

/** Leaf directories a dataroot can have with Moodle's names: one slot each. */
export const SLOTS = BLOB_AREAS.length * 65536;
const SLASH = 47;

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Two lower-case hex digits at `at` and `at + 1` of `code`, or -1. */
function byte(code: (i: number) => number, at: number): number {
  const hi = nibble(code(at));
  const lo = nibble(code(at + 1));
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

/** The slot of the leaf `path[start, end)` (`<area>/xx/yy`), or -1 when it is not shaped so. */
function slotOf(code: (i: number) => number, start: number, end: number, startsWith: (a: string) => boolean) {
  for (let a = 0; a < BLOB_AREAS.length; a++) {
    const area = BLOB_AREAS[a] as string;
    if (end - start !== area.length + 6 || !startsWith(area)) continue;
    const at = start + area.length;
    if (code(at) !== SLASH || code(at + 3) !== SLASH) return -1;
    const ab = byte(code, at + 1);
    const cd = byte(code, at + 4);
    return ab < 0 || cd < 0 ? -1 : a * 65536 + ab * 256 + cd;
  }
  return -1;
}

/** The leaf directory of a path at depth three (`filedir/ab/cd/x` → `filedir/ab/cd`). */
export const leafOf = (path: string) => path.slice(0, path.lastIndexOf('/'));

/** The slot of a leaf directory's path, or -1 when it is not `<area>/xx/yy` with lower-case hex. */
export function leafSlot(path: string): number {
  return slotOf(
    (i) => path.charCodeAt(i),
    0,
    path.length,
    (a) => path.startsWith(a),
  );
}

const AREA_BYTES = BLOB_AREAS.map((a) => Buffer.from(a, 'latin1'));

/**
 * The slot of the leaf in `buf[start, end)` (a path's bytes up to its last '/'), or -1. Read in place, with
 * no closure or string a call: the window's scan calls it for every leaf directory.
 */
export function leafSlotIn(buf: Uint8Array, start: number, end: number): number {
  for (let a = 0; a < AREA_BYTES.length; a++) {
    const area = AREA_BYTES[a] as Buffer;
    if (end - start !== area.length + 6) continue;
    let k = 0;
    while (k < area.length && buf[start + k] === area[k]) k++;
    if (k < area.length) continue;
    const at = start + area.length;
    if (buf[at] !== SLASH || buf[at + 3] !== SLASH) return -1;
    const ab = hexByteIn(buf, at + 1);
    const cd = hexByteIn(buf, at + 4);
    return ab < 0 || cd < 0 ? -1 : a * 65536 + ab * 256 + cd;
  }
  return -1;
}

function hexByteIn(buf: Uint8Array, at: number): number {
  const hi = nibble(buf[at] ?? 0);
  const lo = nibble(buf[at + 1] ?? 0);
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** The path of a slot. */
export function slotPath(slot: number): string {
  return `${BLOB_AREAS[slot >>> 16]}/${hex2((slot >>> 8) & 0xff)}/${hex2(slot & 0xff)}`;
}

/** A set of leaf directories: one byte a possible slot, and the odd names as strings. */
export class LeafSet implements Iterable<string> {
  private readonly marks = new Uint8Array(SLOTS);
  private readonly odd = new Set<string>();
  private n = 0;

  get size(): number {
    return this.n;
  }

  add(path: string): this {
    const s = leafSlot(path);
    if (s < 0) {
      if (!this.odd.has(path)) this.n++;
      this.odd.add(path);
    } else if (!this.marks[s]) {
      this.marks[s] = 1;
      this.n++;
    }
    return this;
  }

  has(path: string): boolean {
    const s = leafSlot(path);
    return s < 0 ? this.odd.has(path) : this.marks[s] === 1;
  }

  addSlot(slot: number): void {
    if (this.marks[slot]) return;
    this.marks[slot] = 1;
    this.n++;
  }

  /** Whether the slot (from leafSlotIn; -1 for an odd name, then `path()` names it) is in the set. */
  hasSlot(slot: number, path: () => string): boolean {
    return slot < 0 ? this.odd.has(path()) : this.marks[slot] === 1;
  }

  *[Symbol.iterator](): Iterator<string> {
    for (let s = 0; s < SLOTS; s++) if (this.marks[s]) yield slotPath(s);
    yield* this.odd;
  }
}

/** A leaf directory's owner, mode and time, as a blob list's directory line names them. */
export interface LeafAttrs {
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

/** A leaf directory as LeafTable.each() yields it. */
export interface LeafEntry extends LeafAttrs {
  path: string;
  ctimeMs: number;
  /** Whether the attributes were set (else they are stale). */
  hasAttrs: boolean;
}

/**
 * Leaf directories with their ctimes (ms) and, when given, their attributes: a slot's ctime is NaN when the
 * directory is not in the table. Iterates as a Map of path → ctime would, in slot order (odd names last).
 */
export class LeafTable implements Iterable<[string, number]> {
  /** Allocated by the first set(): a table replaced by an empty one costs nothing. */
  private ctimes: Float64Array | undefined;
  private attrs:
    | { modes: Uint16Array; uids: Uint32Array; gids: Uint32Array; mtimes: Float64Array }
    | undefined;
  private readonly odd = new Map<string, { ctimeMs: number; attrs?: LeafAttrs }>();
  private n = 0;

  /** A table of the pairs given (a Map, another table). */
  static from(pairs: Iterable<[string, number]>): LeafTable {
    const t = new LeafTable();
    for (const [path, ctime] of pairs) t.set(path, ctime);
    return t;
  }

  get size(): number {
    return this.n;
  }

  set(path: string, ctimeMs: number, attrs?: LeafAttrs): void {
    const s = leafSlot(path);
    if (s < 0) {
      if (!this.odd.has(path)) this.n++;
      this.odd.set(path, attrs ? { ctimeMs, attrs } : { ctimeMs });
      return;
    }
    this.setSlot(s, ctimeMs, attrs);
  }

  /** set() by the slot of a leaf directory shaped as Moodle names them (see leafSlotIn). */
  setSlot(s: number, ctimeMs: number, attrs?: LeafAttrs): void {
    if (attrs) this.setSlotWith(s, ctimeMs, attrs.mode, attrs.uid, attrs.gid, attrs.mtimeMs);
    else this.stamp(s, ctimeMs);
  }

  /** setSlot() with the attributes as numbers: no object a directory. */
  setSlotWith(s: number, ctimeMs: number, mode: number, uid: number, gid: number, mtimeMs: number): void {
    this.stamp(s, ctimeMs);
    this.attrs ??= {
      modes: new Uint16Array(SLOTS),
      uids: new Uint32Array(SLOTS),
      gids: new Uint32Array(SLOTS),
      mtimes: new Float64Array(SLOTS),
    };
    this.attrs.modes[s] = mode;
    this.attrs.uids[s] = uid;
    this.attrs.gids[s] = gid;
    this.attrs.mtimes[s] = mtimeMs;
  }

  private stamp(s: number, ctimeMs: number): void {
    this.ctimes ??= new Float64Array(SLOTS).fill(Number.NaN);
    if (Number.isNaN(this.ctimes[s] as number)) this.n++;
    this.ctimes[s] = ctimeMs;
  }

  /** The ctime of a leaf directory, or undefined when it is not in the table. */
  get(path: string): number | undefined {
    const s = leafSlot(path);
    if (s < 0) return this.odd.get(path)?.ctimeMs;
    const c = this.ctimes?.[s] ?? Number.NaN;
    return Number.isNaN(c) ? undefined : c;
  }

  /**
   * The leaf directories to list again, comparing these ctimes (now) with those taken `before`: changed (or
   * new), or within the margin of that first look (at or after `sinceMs`); `stale` adds those gone. An odd
   * name `ignore` says is left out of both (a directory nothing is ever listed from).
   */
  changedSince(
    before: LeafTable,
    sinceMs: number,
    ignore?: (path: string) => boolean,
  ): { changed: LeafSet; stale: LeafSet } {
    const changed = new LeafSet();
    const stale = new LeafSet();
    const now = this.ctimes;
    const then = before.ctimes;
    for (let s = 0; s < SLOTS; s++) {
      const c = now?.[s] ?? Number.NaN;
      const b = then?.[s] ?? Number.NaN;
      if (!Number.isNaN(c) && (b !== c || c >= sinceMs)) {
        changed.addSlot(s);
        stale.addSlot(s);
      } else if (Number.isNaN(c) && !Number.isNaN(b)) stale.addSlot(s);
    }
    for (const [path, { ctimeMs }] of this.odd) {
      if (ignore?.(path)) continue;
      if (before.odd.get(path)?.ctimeMs !== ctimeMs || ctimeMs >= sinceMs) {
        changed.add(path);
        stale.add(path);
      }
    }
    for (const path of before.odd.keys()) if (!this.odd.has(path) && !ignore?.(path)) stale.add(path);
    return { changed, stale };
  }

  has(path: string): boolean {
    return this.get(path) !== undefined;
  }

  /** Whether the slot's directory is in the table. */
  hasSlot(s: number): boolean {
    return !Number.isNaN(this.ctimes?.[s] ?? Number.NaN);
  }

  /**
   * Whether slot `s` is in both tables with the same owner, mode and time (both with attributes); `seconds`:
   * the times compared in whole seconds (this table's from a tar header).
   */
  sameAttrsAt(s: number, other: LeafTable, seconds = false): boolean {
    const a = this.attrs;
    const b = other.attrs;
    if (!a || !b || !this.hasSlot(s) || !other.hasSlot(s)) return false;
    return (
      (a.modes[s] as number) === (b.modes[s] as number) &&
      a.uids[s] === b.uids[s] &&
      a.gids[s] === b.gids[s] &&
      (seconds
        ? Math.floor((a.mtimes[s] as number) / 1000) === Math.floor((b.mtimes[s] as number) / 1000)
        : a.mtimes[s] === b.mtimes[s])
    );
  }

  *[Symbol.iterator](): Iterator<[string, number]> {
    for (const [path, ctime] of this.entries()) yield [path, ctime];
  }

  keys(): Generator<string> {
    return (function* (t: LeafTable) {
      for (const [path] of t.entries()) yield path;
    })(this);
  }

  /**
   * Every leaf directory as entries() gives them, but in one object refilled for each (copy what you keep):
   * an array and an attributes object a directory were most of a 2nd backup's garbage at 200,000 blobs.
   */
  *each(): Generator<Readonly<LeafEntry>> {
    const e: LeafEntry = { path: '', ctimeMs: 0, hasAttrs: false, mode: 0, uid: 0, gid: 0, mtimeMs: 0 };
    const a = this.attrs;
    for (let s = 0; s < SLOTS && this.ctimes; s++) {
      const c = this.ctimes[s] as number;
      if (Number.isNaN(c)) continue;
      e.path = slotPath(s);
      e.ctimeMs = c;
      e.hasAttrs = a !== undefined;
      if (a) {
        e.mode = a.modes[s] as number;
        e.uid = a.uids[s] as number;
        e.gid = a.gids[s] as number;
        e.mtimeMs = a.mtimes[s] as number;
      }
      yield e;
    }
    for (const [path, { ctimeMs, attrs }] of this.odd) {
      e.path = path;
      e.ctimeMs = ctimeMs;
      e.hasAttrs = attrs !== undefined;
      if (attrs) Object.assign(e, attrs);
      yield e;
    }
  }

  /** Every leaf directory with its ctime and attributes (undefined when none were set). */
  *entries(): Generator<[string, number, LeafAttrs | undefined]> {
    for (const e of this.each())
      yield [
        e.path,
        e.ctimeMs,
        e.hasAttrs ? { mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs } : undefined,
      ];
  }
}
