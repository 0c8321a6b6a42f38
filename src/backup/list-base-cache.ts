import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeptBase, LastList, ListBase } from '../store/snapshot-list.js';

/**
 * The text of the shared blob list the last snapshot's list is the difference from, per volume, in the state
 * directory beside the listings (`bases/`): the next backup writes its list as the difference from it
 * without reading it back from the target. Gone or unreadable, the next backup writes a new base.
 */
interface Pointer {
  version: 1;
  sha256: string;
  storedBytes: number;
  count: number;
  lines: string;
  /** The sha256 of the text in `lines`. */
  textSha256: string;
  /** What reads the base: its codec and the public keys it is encrypted to (see readableAs). */
  readableAs: string;
  /** The last committed snapshot's list with this base (LastList), its delta lines a file in `bases/`. */
  last?: { textSha256: string; count: number; delta?: string; deltaSha256?: string };
}

/**
 * Who can read a list this run writes: the codec and the recipients, sorted. A base is used only by a run
 * whose lists read the same way, else a snapshot encrypted to new keys would name a base only the old key
 * opens. null with a passphrase (no public part to compare): such runs always write a new base.
 */
export function readableAs(
  codec: string,
  recipients: readonly string[] | null,
  encrypted: boolean,
): string | null {
  if (!encrypted) return JSON.stringify({ codec, recipients: [] });
  if (!recipients) return null;
  return JSON.stringify({ codec, recipients: [...recipients].sort() });
}

function dirOf(listings: string): string {
  return join(listings, 'bases');
}

export async function loadKeptBase(
  listings: string,
  volume: string,
  readable: string | null,
): Promise<KeptBase | undefined> {
  if (readable === null) return undefined;
  const dir = dirOf(listings);
  try {
    const p = JSON.parse(await readFile(join(dir, `${volume}.json`), 'utf8')) as Pointer;
    if (p.version !== 1 || !/^[0-9a-f]{64}$/.test(p.sha256) || p.lines.includes('/')) return undefined;
    if (p.readableAs !== readable) return undefined;
    if (typeof p.textSha256 !== 'string') return undefined;
    const last = lastOf(p, dir);
    return {
      sha256: p.sha256,
      storedBytes: p.storedBytes,
      count: p.count,
      linesPath: join(dir, p.lines),
      textSha256: p.textSha256,
      ...(last ? { last } : {}),
    };
  } catch {
    return undefined;
  }
}

/** The pointer's last list, when it is well formed (else none: the next run diffs). */
function lastOf(p: Pointer, dir: string): LastList | undefined {
  const l = p.last;
  if (!l || !/^[0-9a-f]{64}$/.test(l.textSha256) || !Number.isInteger(l.count)) return undefined;
  if (l.delta === undefined) return { textSha256: l.textSha256, count: l.count };
  if (l.delta.includes('/') || !/^[0-9a-f]{64}$/.test(l.deltaSha256 ?? '')) return undefined;
  return {
    textSha256: l.textSha256,
    count: l.count,
    deltaPath: join(dir, l.delta),
    deltaSha256: l.deltaSha256,
  };
}

/**
 * Where a run writes the text of a new base (`lines`) or its difference's lines (`delta`, LastList): in the
 * state directory already, kept only once committed (keepBase removes the ones its pointer does not name).
 */
export async function newKeptPath(
  listings: string,
  volume: string,
  kind: 'lines' | 'delta',
): Promise<string> {
  const dir = dirOf(listings);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${volume}.${randomBytes(6).toString('hex')}.${kind}`);
}

/**
 * After the commit: the volume's kept base and last list. With `text` (a new base) the pointer is new;
 * without, only its last list changes, and only when it still names `base` for the same readers. Texts and
 * deltas the pointer no longer names go.
 */
export async function keepBase(
  listings: string,
  volume: string,
  base: ListBase,
  text: { linesPath: string; textSha256: string } | undefined,
  last: LastList | undefined,
  readable: string,
): Promise<void> {
  const dir = dirOf(listings);
  const file = join(dir, `${volume}.json`);
  const name = (path: string) => path.slice(path.lastIndexOf('/') + 1);
  let pointer: Pointer;
  if (text) {
    pointer = {
      version: 1,
      sha256: base.sha256,
      storedBytes: base.storedBytes,
      count: base.count,
      lines: name(text.linesPath),
      textSha256: text.textSha256,
      readableAs: readable,
    };
  } else {
    const p = JSON.parse(await readFile(file, 'utf8')) as Pointer;
    if (p.version !== 1 || p.sha256 !== base.sha256 || p.readableAs !== readable) {
      // Not this base's pointer any more: the run's difference is not kept.
      if (last?.deltaPath) await rm(last.deltaPath, { force: true });
      return;
    }
    pointer = { ...p };
    delete pointer.last;
  }
  if (last)
    pointer.last = {
      textSha256: last.textSha256,
      count: last.count,
      ...(last.deltaPath ? { delta: name(last.deltaPath), deltaSha256: last.deltaSha256 } : {}),
    };
  const tmp = join(dir, `.${volume}.json.tmp`);
  await writeFile(tmp, JSON.stringify(pointer), { mode: 0o600 });
  await rename(tmp, file);
  const keep = new Set([pointer.lines, pointer.last?.delta]);
  for (const n of await readdir(dir))
    if (
      n.startsWith(`${volume}.`) &&
      /^[0-9a-f]{12}\.(lines|delta)$/.test(n.slice(volume.length + 1)) &&
      !keep.has(n)
    )
      await rm(join(dir, n), { force: true });
}
