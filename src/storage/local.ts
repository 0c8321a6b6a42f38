import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  rename,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SidecarError } from '../common/errors.js';
import type { LocalTarget } from '../config/types.js';
import { type Backend, checkRange, type ObjectInfo, type PutOptions, type WritableFile } from './backend.js';
import { ByteCounter } from './length-check.js';
import { WritebackTap } from './writeback.js';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** In-flight puts write here first; list() never shows such names and keys may not use them. */
const TMP_PREFIX = '.tmp-';
/** A put retries its directory creation this often when a concurrent delete removes an empty parent. */
const MKDIR_RACE_ATTEMPTS = 3;

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Backend on a directory (offen's BACKUP_ARCHIVE). Objects are plain files named by their key, so an admin can
 * copy snapshots out with ordinary tools. Permissions are owner-only: archives hold the site's database.
 */
export class LocalBackend implements Backend {
  readonly location: string;
  private readonly root: string;

  constructor(target: LocalTarget | string) {
    this.root = resolve(typeof target === 'string' ? target : target.path);
    this.location = `local:${this.root}`;
  }

  async put(key: string, body: Readable, opts: PutOptions = {}): Promise<{ size: number }> {
    let segments: string[];
    try {
      segments = this.segments(key);
    } catch (err) {
      body.destroy(); // a put owns its body, also when it fails early
      throw err;
    }
    const dir = join(this.root, ...segments.slice(0, -1));
    const final = join(this.root, ...segments);
    const tmp = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const counter = new ByteCounter(opts.contentLength);
    let created = false;
    try {
      const fh = await this.openTemp(segments.slice(0, -1), tmp);
      created = true;
      // open() applied the umask; the mode must not depend on it.
      await fh.chmod(FILE_MODE).catch(async (err: unknown) => {
        await fh.close();
        throw err;
      });
      // The stream fsyncs (flush) and closes the handle. Not autoClose:false + fh.sync()/close(): on Node 20
      // a FileHandle stays referenced by such a stream and fh.close() never settles.
      await pipeline(body, counter, new WritebackTap(fh), fh.createWriteStream({ flush: true }));
      await rename(tmp, final);
      created = false;
      await syncDir(dir);
      return { size: counter.bytes };
    } catch (err) {
      body.destroy();
      if (created) await unlink(tmp).catch(() => undefined);
      await this.pruneEmptyDirs(segments.slice(0, -1));
      throw this.wrap('put', key, err);
    }
  }

  /**
   * A finished local file (a spooled pack) into place without passing its bytes through this process: a
   * hard link when the spool is on the target's file system, else an in-kernel copy (copy_file_range);
   * then synced and renamed like put(). Streaming it through put() cost a read and a write of every byte
   * in JS (20,000 files, 520 MB of packs: ~1.5 CPU s of a 5 s first incremental run).
   */
  async putFile(
    key: string,
    path: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }> {
    const segments = this.segments(key);
    const dir = join(this.root, ...segments.slice(0, -1));
    const final = join(this.root, ...segments);
    const tmp = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let created = false;
    try {
      await this.ensureDirs(segments.slice(0, -1));
      await link(path, tmp).catch(async (err: unknown) => {
        if (!['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP'].includes(errnoCode(err) ?? '')) throw err;
        await copyFile(path, tmp, constants.COPYFILE_EXCL);
      });
      created = true;
      const fh = await open(tmp, 'r+');
      try {
        const { size } = await fh.stat();
        if (size !== opts.contentLength)
          throw new Error(`${path} holds ${size} bytes, expected ${opts.contentLength}`);
        await fh.chmod(FILE_MODE);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      created = false;
      await syncDir(dir);
      return { size: opts.contentLength };
    } catch (err) {
      if (created) await unlink(tmp).catch(() => undefined);
      await this.pruneEmptyDirs(segments.slice(0, -1));
      throw this.wrap('put', key, err);
    }
  }

  /**
   * A temp file beside the key for another process to write (the direct read path's compressor); commit()
   * publishes it as put() does: synced, renamed, its directory synced.
   */
  async createFile(key: string): Promise<WritableFile> {
    const segments = this.segments(key);
    const dirSegments = segments.slice(0, -1);
    const dir = join(this.root, ...dirSegments);
    const final = join(this.root, ...segments);
    const tmp = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let fh: FileHandle;
    try {
      fh = await this.openTemp(dirSegments, tmp);
    } catch (err) {
      await this.pruneEmptyDirs(dirSegments);
      throw this.wrap('put', key, err);
    }
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await fh.close();
    };
    const discard = async () => {
      await close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      await this.pruneEmptyDirs(dirSegments).catch(() => undefined);
    };
    try {
      // open() applied the umask; the mode must not depend on it.
      await fh.chmod(FILE_MODE);
    } catch (err) {
      await discard();
      throw this.wrap('put', key, err);
    }
    return {
      fd: fh.fd,
      path: tmp,
      flushSoFar: () => fh.datasync(),
      commit: async () => {
        try {
          const { size } = await fh.stat();
          await fh.sync();
          await close();
          await rename(tmp, final);
          await syncDir(dir);
          return { size };
        } catch (err) {
          await discard();
          throw this.wrap('put', key, err);
        }
      },
      discard,
      writeFailed: (detail) =>
        new SidecarError(
          'STORAGE_FAILED',
          `put ${key} in ${this.location} failed: ${detail}`,
          'check that the archive directory is writable by the sidecar and has free space',
        ),
    };
  }

  /** A hard link under the new key (a copy across file systems: putFile's fallback); both names are plain files. */
  async copy(
    from: string,
    to: string,
    opts: PutOptions & { contentLength: number },
  ): Promise<{ size: number }> {
    const source = join(this.root, ...this.segments(from));
    if (!(await this.stat(from)))
      throw new SidecarError('STORAGE_NOT_FOUND', `no object ${from} in ${this.location}`);
    return this.putFile(to, source, opts);
  }

  localPath(key: string): string {
    return join(this.root, ...this.segments(key));
  }

  async get(key: string): Promise<Readable> {
    return this.read(key);
  }

  async getRange(key: string, start: number, end: number): Promise<Readable> {
    checkRange(start, end);
    return this.read(key, { start, end: end - 1 });
  }

  private async read(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const path = join(this.root, ...this.segments(key));
    // Open first so a missing object rejects here instead of erroring later on the stream.
    const fh = await open(path, 'r').catch((err: unknown) => {
      throw this.wrap('get', key, err);
    });
    const info = await fh.stat().catch(async (err: unknown) => {
      await fh.close();
      throw this.wrap('get', key, err);
    });
    if (!info.isFile()) {
      await fh.close();
      throw new SidecarError('STORAGE_NOT_FOUND', `no object ${key} in ${this.location}`);
    }
    return fh.createReadStream(range);
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const path = join(this.root, ...this.segments(key));
    try {
      const info = await stat(path);
      return info.isFile() ? { key, size: info.size, modified: info.mtime } : null;
    } catch (err) {
      if (isMissing(err)) return null;
      throw this.wrap('stat', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    // Walk only the deepest directory the prefix names completely; the rest of the prefix filters names.
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut < 0 ? '' : prefix.slice(0, cut);
    const start = dirKey === '' ? [] : this.segments(dirKey, prefix);
    const out: ObjectInfo[] = [];
    const pending: string[][] = [start];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      let entries: Dirent[];
      try {
        entries = await readdir(join(this.root, ...dir), { withFileTypes: true });
      } catch (err) {
        if (isMissing(err)) continue;
        throw this.wrap('list', prefix, err);
      }
      for (const entry of entries) {
        const segs = [...dir, entry.name];
        const key = segs.join('/');
        // Symlinks are not followed: nothing outside the root is listed.
        if (entry.isDirectory()) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) pending.push(segs);
        } else if (entry.isFile() && !entry.name.startsWith(TMP_PREFIX) && key.startsWith(prefix)) {
          const info = await stat(join(this.root, ...segs)).catch((err: unknown) => {
            if (isMissing(err)) return null; // deleted while listing
            throw this.wrap('list', prefix, err);
          });
          if (info) out.push({ key, size: info.size, modified: info.mtime });
        }
      }
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const segments = this.segments(key);
    try {
      await unlink(join(this.root, ...segments));
    } catch (err) {
      // EISDIR: a directory is not an object, so there is nothing to delete either.
      if (!isMissing(err) && errnoCode(err) !== 'EISDIR') throw this.wrap('delete', key, err);
    }
    await this.pruneEmptyDirs(segments.slice(0, -1));
  }

  /** Splits and checks a key: relative, no '.'/'..'/empty segments, no temp names, no NUL. */
  private segments(key: string, shown = key): string[] {
    const segs = key.split('/');
    const bad =
      key === '' ||
      key.includes('\0') ||
      segs.some((s) => s === '' || s === '.' || s === '..' || s.startsWith(TMP_PREFIX));
    if (bad) {
      throw new SidecarError(
        'STORAGE_FAILED',
        `refusing storage key ${JSON.stringify(shown)} in ${this.location}: keys are relative, without '.', '..' or empty segments`,
      );
    }
    return segs;
  }

  /** Creates the parent directories (0700 each, whatever the umask) and the temp file, retrying a delete race. */
  private async openTemp(dirSegments: string[], tmp: string) {
    for (let attempt = 1; ; attempt++) {
      await this.ensureDirs(dirSegments);
      try {
        return await open(tmp, 'wx', FILE_MODE);
      } catch (err) {
        // A concurrent delete() may have pruned the freshly made, still empty parent.
        if (errnoCode(err) !== 'ENOENT' || attempt >= MKDIR_RACE_ATTEMPTS) throw err;
      }
    }
  }

  private async ensureDirs(dirSegments: string[]): Promise<void> {
    await mkdirOwned(this.root, true);
    let dir = this.root;
    for (const seg of dirSegments) {
      dir = join(dir, seg);
      await mkdirOwned(dir, false);
    }
  }

  /** Removes now-empty directories from the deepest up to (not including) the root. */
  private async pruneEmptyDirs(dirSegments: string[]): Promise<void> {
    for (let n = dirSegments.length; n > 0; n--) {
      try {
        await rmdir(join(this.root, ...dirSegments.slice(0, n)));
      } catch {
        return; // not empty (or already gone, or not ours): stop climbing
      }
    }
  }

  private wrap(op: string, key: string, err: unknown): SidecarError {
    if (err instanceof SidecarError) return err;
    if (op === 'get' && isMissing(err)) {
      return new SidecarError('STORAGE_NOT_FOUND', `no object ${key} in ${this.location}`, undefined, {
        cause: err,
      });
    }
    return new SidecarError(
      'STORAGE_FAILED',
      `${op} ${key} in ${this.location} failed: ${message(err)}`,
      // Only file-system errors carry a code; a failing source stream is not the archive's fault.
      errnoCode(err)
        ? 'check that the archive directory is writable by the sidecar and has free space'
        : undefined,
      { cause: err },
    );
  }
}

function isMissing(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** mkdir with an explicit chmod (mkdir's mode is filtered by the umask); an existing directory is left as is. */
async function mkdirOwned(dir: string, recursive: boolean): Promise<void> {
  try {
    if (recursive) {
      if ((await mkdir(dir, { recursive: true, mode: DIR_MODE })) === undefined) return;
    } else {
      await mkdir(dir, { mode: DIR_MODE });
    }
    await chmod(dir, DIR_MODE);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
    // lstat: a symlinked directory inside the archive could point a put outside of it.
    if (!(await lstat(dir)).isDirectory()) throw new Error(`${dir} exists and is not a directory`);
  }
}

/** Makes the rename durable: without it a crash may forget that the new name exists. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
