import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeptBase, ListBase } from '../store/snapshot-list.js';

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
    return {
      sha256: p.sha256,
      storedBytes: p.storedBytes,
      count: p.count,
      linesPath: join(dir, p.lines),
      textSha256: p.textSha256,
    };
  } catch {
    return undefined;
  }
}

/** Where a run writes the text of a new base: in the state directory already, kept only once committed. */
export async function newBaseLinesPath(listings: string, volume: string): Promise<string> {
  const dir = dirOf(listings);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${volume}.${randomBytes(6).toString('hex')}.lines`);
}

/** After the commit: the new base becomes the volume's kept base; older texts go. */
export async function keepBase(
  listings: string,
  volume: string,
  base: ListBase,
  text: { linesPath: string; textSha256: string },
  readable: string,
): Promise<void> {
  const dir = dirOf(listings);
  const lines = text.linesPath.slice(text.linesPath.lastIndexOf('/') + 1);
  const pointer: Pointer = {
    version: 1,
    sha256: base.sha256,
    storedBytes: base.storedBytes,
    count: base.count,
    lines,
    textSha256: text.textSha256,
    readableAs: readable,
  };
  const tmp = join(dir, `.${lines}.tmp`);
  await writeFile(tmp, JSON.stringify(pointer), { mode: 0o600 });
  await rename(tmp, join(dir, `${volume}.json`));
  for (const name of await readdir(dir))
    if (
      name.startsWith(`${volume}.`) &&
      /^[0-9a-f]{12}\.lines$/.test(name.slice(volume.length + 1)) &&
      name !== lines
    )
      await rm(join(dir, name), { force: true });
}
