import { createHash } from 'node:crypto';
import { link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ListedBlob, listBlobs } from '../../../src/store/listing.js';
import { SharedInodes } from '../../../src/store/shared-inodes.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const at = (area: string, h: string) => `${area}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;

describe('SharedInodes: which hard-linked blobs the store may take', () => {
  let base: string;
  let root: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'mbs-inodes-'));
    root = join(base, 'volume');
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  async function blob(text: string, area = 'filedir'): Promise<string> {
    const path = at(area, sha1(text));
    await mkdir(join(root, dirname(path)), { recursive: true });
    await writeFile(join(root, path), text);
    return path;
  }
  async function linkTo(path: string, other: string): Promise<void> {
    await mkdir(dirname(other), { recursive: true });
    await link(join(root, path), other);
  }

  it('takes a blob linked only from outside the volume or from another blob path; keeps one linked from a non-blob file of the volume', async () => {
    const plain = await blob('plain');
    const outside = await blob('linked from another volume');
    await linkTo(outside, join(base, 'other-volume', 'copy'));
    const twin = await blob('the same content in trashdir');
    await linkTo(twin, join(root, at('trashdir', sha1('the same content in trashdir'))));
    const kept = await blob('linked from the repository');
    await linkTo(kept, join(root, 'repository', 'course', 'file.pdf'));
    const flat = await blob('linked flat in trashdir');
    await linkTo(flat, join(root, 'trashdir', sha1('linked flat in trashdir')));
    // A blob-shaped path no list line can hold stays in the tarball: a blob linked to it stays there too.
    const tabbed = await blob('linked from a path with a tab');
    await linkTo(tabbed, join(root, 'filedir', 'ab', 'c\td', sha1('linked from a path with a tab')));

    const listed = new Map<string, ListedBlob>();
    for await (const l of listBlobs(root)) if (l.kind === 'blob') listed.set(l.path, l);
    const links = new SharedInodes(root);
    const storable = async (path: string) => {
      const l = listed.get(path);
      if (!l) throw new Error(`${path} not listed`);
      return links.storable(l);
    };
    expect(listed.get(outside)?.nlink).toBe(2);
    expect(await storable(plain)).toBe(true);
    expect(await storable(outside)).toBe(true);
    expect(await storable(twin)).toBe(true);
    expect(await storable(at('trashdir', sha1('the same content in trashdir')))).toBe(true);
    expect(await storable(kept)).toBe(false);
    expect(await storable(flat)).toBe(false);
    expect(await storable(tabbed)).toBe(false);
  });

  it('keeps every linked blob in the tarball when the walk fails; a blob with one link needs no walk', async () => {
    const plain = await blob('plain');
    const linked = await blob('linked');
    await linkTo(linked, join(base, 'elsewhere'));
    const listed = new Map<string, ListedBlob>();
    for await (const l of listBlobs(root)) if (l.kind === 'blob') listed.set(l.path, l);
    // The volume gone before the walk: find fails.
    await rm(root, { recursive: true });
    const links = new SharedInodes(root);
    expect(await links.storable(listed.get(plain) as ListedBlob)).toBe(true);
    expect(await links.storable(listed.get(linked) as ListedBlob)).toBe(false);
  });
});
