import { isListable } from './blob-list.js';
import { BLOB_AREAS, isSha1Hex } from './layout.js';
import { type Listed, type ListedBlob, records } from './listing.js';

/**
 * Which blobs with more than one link the store may take. A blob leaves the tarball once it is in the
 * store, and a restore that fetches it writes a file of its own: a hard link it shared with another file of
 * the volume would be lost, so such a blob stays in the tarball, where tar keeps the link. A link to a file
 * outside the volume (a dataroot copied in with `cp -al` from another volume of the same disk) cannot be
 * kept by any archive of this volume; before this check every such blob stayed in the tarball, read in full
 * inside the stop window at every run. Links between two blob paths (`filedir/` and `trashdir/`, the same
 * content) are not kept either: both names come back, each a file, with the same bytes.
 */
export class SharedInodes {
  private linked: Promise<Set<string> | null> | undefined;

  constructor(private readonly root: string) {}

  /**
   * Whether the store may take this listed file: a blob with one link, or none of whose others is a non-blob
   * file of the volume. Anything else at a blob's depth (a name that is not a blob's, a symlink, a path no list
   * line can hold) the tarball keeps. A promise only for a file with several links.
   */
  storable(l: Listed): boolean | Promise<boolean> {
    if (l.kind !== 'blob') return false;
    return l.nlink <= 1 || this.onlyLinkedOutside(l);
  }

  private async onlyLinkedOutside(l: ListedBlob): Promise<boolean> {
    // One walk of the volume, and only when some blob has several links (Moodle never makes one). A walk
    // that fails (a directory it may not read) keeps every such blob in the tarball, as before this check.
    this.linked ??= linkedNonBlobs(this.root).catch(() => null);
    const linked = await this.linked;
    return linked !== null && !linked.has(l.ino);
  }
}

/** The inodes of the volume's regular files that have several links and are not at a blob's path. */
async function linkedNonBlobs(root: string): Promise<Set<string>> {
  const inodes = new Set<string>();
  const args = ['.', '-xdev', '-type', 'f', '-links', '+1', '-printf', '%i %P\\0'];
  for await (const r of records(root, args, (line) => line)) {
    const sp = r.indexOf(' ');
    if (!takenAsBlob(r.slice(sp + 1))) inodes.add(r.slice(0, sp));
  }
  return inodes;
}

/**
 * A path listBlobs takes for a blob's (`<area>/x/y/<40 hex>`, any directory names, one a list line can
 * hold): unlike layout's isBlobPath, which wants two hex levels. A file at any other path stays in the
 * tarball, so a blob linked to it must too.
 */
function takenAsBlob(path: string): boolean {
  const parts = path.split('/');
  return (
    parts.length === 4 &&
    (BLOB_AREAS as readonly string[]).includes(parts[0] as string) &&
    isSha1Hex(parts[3] as string) &&
    isListable(path)
  );
}
