import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
const where = (area: string, h: string) => `${area}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;

export interface GeneratedDataroot {
  /** Every blob file written: path relative to the root → its content's real SHA-1. */
  files: Map<string, string>;
  /** The files whose name is not the SHA-1 of their content (path → claimed name). */
  mismatched: Map<string, string>;
  /** Files under filedir/ that are not blobs. */
  others: string[];
}

/** A pseudo-random size between lo and hi (a mix of small files, as Moodle's filedir has). */
function sizeOf(i: number): number {
  const r = (i * 2654435761) % 1000;
  if (r < 700) return 50 + ((r * 37) % 8000); // text, small images
  if (r < 950) return 8_000 + r * 120; // documents
  return 100_000 + r * 300; // up to ~400 kB
}

/**
 * A Moodle-like dataroot: `count` SHA-1-named files in filedir/, a few of them `large` bytes, one copied
 * to trashdir/ too, one small and one large file whose content does not match their name, plus stray
 * files that are not blobs (warning.txt, a symlink, a misplaced blob).
 */
export async function generateDataroot(
  root: string,
  opts: { count: number; large: number[]; seed?: string },
): Promise<GeneratedDataroot> {
  const g: GeneratedDataroot = { files: new Map(), mismatched: new Map(), others: [] };
  const put = async (rel: string, data: Buffer) => {
    await mkdir(join(root, rel, '..'), { recursive: true });
    await writeFile(join(root, rel), data, { mode: 0o640 });
  };
  const blob = async (data: Buffer, area = 'filedir') => {
    const h = sha1(data);
    await put(where(area, h), data);
    g.files.set(where(area, h), h);
    return h;
  };
  const sizes = [...Array.from({ length: opts.count }, (_, i) => sizeOf(i)), ...opts.large];
  let first = '';
  for (const [i, size] of sizes.entries()) {
    // Half random, half compressible text, as a real site's mix.
    const data =
      i % 2 ? randomBytes(size) : Buffer.from(`${opts.seed ?? ''}${i} moodle `.repeat(size).slice(0, size));
    const h = await blob(data);
    first ||= h;
  }
  // The same content in trashdir/ (a deleted file): stored once.
  const again = await readFile(join(root, where('filedir', first)));
  await blob(again, 'trashdir');
  // Real corruption on a live site: content that is not what the name says (a small and a large file).
  for (const size of [1234, Math.max(...opts.large, 10)]) {
    const claimed = sha1(randomBytes(8));
    const data = randomBytes(size);
    await put(where('filedir', claimed), data);
    g.files.set(where('filedir', claimed), sha1(data));
    g.mismatched.set(where('filedir', claimed), claimed);
  }
  await put('filedir/warning.txt', Buffer.from('Do not touch these files.\n'));
  await put('filedir/ab/cd/abcdef', Buffer.from('not a sha1 name'));
  const misplaced = randomBytes(100);
  // In the wrong directory, a file named by its SHA-1 is still a blob (kept where it lay).
  await put(`filedir/00/00/${sha1(misplaced)}`, misplaced);
  g.files.set(`filedir/00/00/${sha1(misplaced)}`, sha1(misplaced));
  await symlink('/etc/passwd', join(root, 'filedir/ab/cd', `abcd${'0'.repeat(36)}`));
  // Only files shaped like blobs are listed: warning.txt and abcdef stay in the tarball unlisted.
  g.others.push(`filedir/ab/cd/abcd${'0'.repeat(36)}`);
  return g;
}

/** Every regular file under `dir` (relative path → SHA-1 of its content), skipping symlinks. */
export async function treeHashes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.set(relative(dir, path), sha1(await readFile(path)));
  }
  return out;
}
