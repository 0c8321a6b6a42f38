import type { Header } from 'tar-stream';
import { SidecarError } from '../common/errors.js';
import { type RawEntry, TarExclude } from './tar-exclude.js';
import { TarGuard } from './tar-guard.js';

const TYPES: Record<string, Header['type']> = {
  '0': 'file',
  '\0': 'file',
  '7': 'contiguous-file',
  '1': 'link',
  '2': 'symlink',
  '5': 'directory',
  '3': 'character-device',
  '4': 'block-device',
  '6': 'fifo',
};

/**
 * PAX keys GNU tar may act on that the guard understands. Anything else (GNU.sparse.name renames an entry,
 * for one) could make tar write somewhere the guard never checked, so it is refused.
 */
const PAX_KEYS =
  /^(path|linkpath|size|uid|gid|uname|gname|mtime|atime|ctime|comment|charset|hdrcharset)$|^(SCHILY|LIBARCHIVE)\.xattr\./;

/**
 * The tar guard in line, in front of GNU tar on the `mount` write path: a pass-through that checks every
 * entry's header before any byte of it is passed on. Restore verified the whole archive beforehand; this
 * second look closes the gap between that check and the unpacking (the stored object could be swapped),
 * which matters more here than with putArchive, because tar runs as root on a real directory.
 */
export function guardStream(volume: string, guard = new TarGuard(volume)): TarExclude {
  return new TarExclude([], (e: RawEntry) => {
    for (const key of Object.keys(e.pax)) {
      if (!PAX_KEYS.test(key)) refuse(volume, e.name, `carries the PAX record ${key}`);
    }
    if (e.type === 'g') refuse(volume, '(global header)', 'is a global PAX header');
    guard.check({
      name: e.name,
      type: TYPES[e.type] ?? (`unknown (${JSON.stringify(e.type)})` as Header['type']),
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: e.size,
      mtime: new Date(e.mtime * 1000),
      linkname: e.linkname,
      uname: '',
      gname: '',
      devmajor: 0,
      devminor: 0,
    });
  });
}

function refuse(volume: string, name: string, why: string): never {
  throw new SidecarError(
    'HOSTILE_ARCHIVE',
    `archive of volume ${volume} refused: entry "${name}" ${why}`,
    'this archive was not written by a backup of this tool, or was tampered with',
  );
}
