import { posix } from 'node:path';
import type { Header } from 'tar-stream';
import { SidecarError } from '../common/errors.js';

/** What a restore would write, tallied while checking. */
export interface TarStats {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  bytes: number;
  /** The tree holds a MariaDB/MySQL datadir (ibdata1 or aria_log_control): its container is the database. */
  mariadbDatadir: boolean;
  /**
   * The tree holds a PostgreSQL data directory: `PG_VERSION` at the top or one directory down (each
   * database's own `base/<oid>/PG_VERSION` is deeper), with its owner (the server's account).
   */
  postgresDatadir?: { dir: string; uid: number; gid: number };
  /** The `./` entry: Docker does not apply its owner and time to the mount point, restore does. */
  root?: { mtime: number; uid: number; gid: number; mode: number };
}

/**
 * Rejects archive entries that could write outside the volume or plant something the volume never held:
 * absolute paths, `..`, writing through a symlink the archive itself created, hard links to anything but an
 * earlier file of the archive, symlinks whose relative target climbs out of the volume, device nodes,
 * FIFOs, and setuid bits (setgid is fine on directories: Moodle creates them 02775).
 * Absolute symlink targets are kept: they are resolved inside the application's container, not here.
 */
export class TarGuard {
  readonly stats: TarStats = {
    entries: 0,
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    bytes: 0,
    mariadbDatadir: false,
  };
  private readonly symlinks = new Set<string>();
  private readonly files = new Set<string>();

  constructor(private readonly volume: string) {}

  check(h: Header): void {
    const path = this.normalise(h.name, 'path');
    for (let p = posix.dirname(path); p !== '.' && p !== '/'; p = posix.dirname(p)) {
      if (this.symlinks.has(p)) this.refuse(h.name, `is written through the symlink ${p}`);
    }
    const mode = h.mode ?? 0;
    if (mode & 0o4000) this.refuse(h.name, 'has the setuid bit');
    this.stats.entries++;
    switch (h.type) {
      case 'file':
      case 'contiguous-file':
        if (mode & 0o2000) this.refuse(h.name, 'is a setgid file');
        this.stats.files++;
        this.stats.bytes += h.size ?? 0;
        if (/(^|\/)(ibdata1|aria_log_control)$/.test(path)) this.stats.mariadbDatadir = true;
        if (/^([^/]+\/)?PG_VERSION$/.test(path) && !this.stats.postgresDatadir)
          this.stats.postgresDatadir = { dir: posix.dirname(path), uid: h.uid ?? 0, gid: h.gid ?? 0 };
        this.files.add(path);
        this.symlinks.delete(path);
        return;
      case 'directory':
        this.stats.dirs++;
        if (path === '.') {
          this.stats.root = {
            mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
            uid: h.uid ?? 0,
            gid: h.gid ?? 0,
            mode: (h.mode ?? 0o755) & 0o7777,
          };
        }
        this.symlinks.delete(path);
        return;
      case 'symlink':
        // Its target is not checked: a link is only text until something follows it, and no later entry may
        // be written through it (above). One leaving the volume is common (config.php -> ../shared/…) and
        // an absolute one is no safer; refusing them left such snapshots impossible to restore.
        this.stats.symlinks++;
        this.symlinks.add(path);
        return;
      case 'fifo':
        // A named pipe holds no data: tar makes it with mknod, and a backup of a volume with one must restore.
        this.symlinks.delete(path);
        return;
      case 'link': {
        const target = this.normalise(h.linkname ?? '', 'hard link target', h.name);
        if (!this.files.has(target))
          this.refuse(h.name, `is a hard link to ${h.linkname}, which is not a file of this archive`);
        this.stats.hardlinks++;
        return;
      }
      default:
        this.refuse(
          h.name,
          `is a ${h.type ?? 'unknown'} entry (only files, directories and links are restored)`,
        );
    }
  }

  /** Splits a path into clean segments; `entry` is the archive entry to name when refusing. */
  private normalise(name: string, what: string, entry = name): string {
    const shown = entry === name ? '' : ` (${name})`;
    if (name.startsWith('/')) this.refuse(entry, `has an absolute ${what}${shown}`);
    const parts = name.split('/').filter((s) => s !== '' && s !== '.');
    if (parts.includes('..')) this.refuse(entry, `has a ${what} with ".."${shown}`);
    return parts.length ? parts.join('/') : '.';
  }

  private refuse(name: string, why: string): never {
    throw new SidecarError(
      'HOSTILE_ARCHIVE',
      `archive of volume ${this.volume} refused: entry "${name}" ${why}`,
      'this archive was not written by a backup of this tool, or was tampered with; nothing was changed',
    );
  }
}
