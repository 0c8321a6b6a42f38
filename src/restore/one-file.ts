import { randomBytes } from 'node:crypto';
import { chmod, chown, rename, rm, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { resolveSnapshot } from '../archive/catalog.js';
import { getCodec } from '../archive/codec.js';
import { SidecarError } from '../common/errors.js';
import { fileTime } from '../common/file-time.js';
import { findSelf } from '../docker/self.js';
import { discoverStack } from '../stack/discover.js';
import type { BlobEntry } from '../store/blob-list.js';
import { readingEncoding, type StoreEncoding } from '../store/encoding.js';
import type { FrameRun } from '../store/frames.js';
import type { PackRecord } from '../store/index-file.js';
import { isSha1Hex } from '../store/layout.js';
import { fetchFrames, framedRuns } from '../store/pack-frames.js';
import { extractPack } from '../store/pack-reader.js';
import { snapshotBlobs } from '../store/snapshot-blobs.js';
import { loadIndex } from '../store/store-io.js';
import { volumeDir } from '../volume/mount-dir.js';
import type { RestoreOptions } from './types.js';

export interface OneFileOptions
  extends Pick<RestoreOptions, 'docker' | 'config' | 'backend' | 'log' | 'signal' | 'job'> {
  snapshot: string;
  /** `filedir/ab/cd/<sha1>` (or trashdir/…), or a content hash. */
  file: string;
  /** A directory to write it under (its path kept); default: the live volume, where Moodle expects it. */
  to?: string;
}

export interface OneFileResult {
  snapshot: string;
  volume: string;
  path: string;
  sha1: string;
  bytes: number;
  into: string;
}

/**
 * One Moodle file back from a snapshot (a deleted course's file, say), without stopping anything: Moodle
 * never changes a file under its name, so writing it back into the live dataroot is safe. It is written to a
 * temp name, its SHA-1 checked, then renamed into place with the snapshot's owner, mode and time.
 */
export async function restoreOneFile(o: OneFileOptions): Promise<OneFileResult> {
  const manifest = await resolveSnapshot(o.backend, o.snapshot, o.job);
  const wanted = o.file.replace(/^\.?\//, '');
  const byHash = isSha1Hex(wanted);
  const incremental = manifest.volumes.filter((x) => x.blobs);
  if (incremental.length === 0) {
    const whole = manifest.volumes.map((x) => x.name).join(', ') || 'none';
    throw new SidecarError(
      'SNAPSHOT_NOT_FOUND',
      `snapshot ${manifest.id} keeps no Moodle files in the store: its volumes (${whole}) were saved whole, so one file cannot be taken out of it`,
      `restore the dataroot's volume instead (\`restore ${manifest.id} --volume <name>\`); backups keep files one by one when the sidecar mounts the volume at /backup/<name>`,
    );
  }
  for (const v of incremental) {
    let found: BlobEntry | undefined;
    for await (const b of snapshotBlobs(o.backend, manifest, v, o.config.encryption)) {
      if (!found && (byHash ? b.sha1 === wanted : b.path === wanted)) found = b;
    }
    if (!found) continue;
    const encoding = readingEncoding(getCodec(manifest.codec), o.config.encryption);
    const index = await loadIndex(o.backend, encoding);
    const at = index.lookup(Buffer.from(found.sha1, 'hex'));
    if (!at) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `${found.path} of snapshot ${manifest.id} is in no pack of the store`,
        'run `verify`',
      );
    }
    const into = o.to ?? (await liveDir(o, v.name, v.dockerName));
    const entry = found;
    const pack = index.pack(at.packId) as PackRecord;
    const path = join(into, entry.path);
    // A framed pack: only the frames the file lies in are read (store/pack-frames.ts), not the whole pack.
    const runs = framedRuns(o.backend, pack, [at], encoding);
    if (runs) await fetchOne(o, { pack, runs, encoding }, at.offset, entry, path);
    else
      await extractPack({
        backend: o.backend,
        encoding,
        pack,
        dir: into,
        placeAt: (sha1) => (sha1 === entry.sha1 ? [entry.path] : []),
        signal: o.signal,
      });
    if (process.getuid?.() === 0) await chown(path, entry.uid, entry.gid);
    await utimes(path, fileTime(entry.mtimeMs), fileTime(entry.mtimeMs));
    o.log.info({ step: 'restore', snapshot: manifest.id, path: entry.path, into }, `restored ${entry.path}`);
    return {
      snapshot: manifest.id,
      volume: v.name,
      path: entry.path,
      sha1: entry.sha1,
      bytes: entry.size,
      into,
    };
  }
  throw new SidecarError(
    'SNAPSHOT_NOT_FOUND',
    `snapshot ${manifest.id} has no Moodle file ${byHash ? 'with content hash' : 'at'} ${wanted} in its store`,
    'give the path as filedir/ab/cd/<sha1> (relative to the dataroot) or the 40-digit content hash; other files are restored with their volume',
  );
}

/** The live volume's directory in the running project (the mount path, writable). */
async function liveDir(o: OneFileOptions, short: string, dockerName: string): Promise<string> {
  const self = await findSelf(o.docker);
  const stack = await discoverStack(o.docker, { project: o.config.project, volumes: [] }, self);
  const target = stack.volumes.find((v) => v.short === short)?.name ?? dockerName;
  // `mount`: a volume this process cannot write is CONFIG_INVALID, naming the fix (or use --to).
  return (await volumeDir(o.docker, target, self, 'mount', 'write')) as string;
}

/** The file out of its pack's frames under a temp name, checked, given the snapshot's mode and renamed in. */
async function fetchOne(
  o: OneFileOptions,
  from: { pack: PackRecord; runs: FrameRun[]; encoding: StoreEncoding },
  offset: number,
  entry: BlobEntry,
  path: string,
): Promise<void> {
  const tmp = join(dirname(path), `.blob-${randomBytes(6).toString('hex')}.tmp`);
  try {
    const blobs = [{ sha1: entry.sha1, offset, size: entry.size, dest: tmp }];
    await fetchFrames({ backend: o.backend, ...from, blobs, signal: o.signal });
    await chmod(tmp, entry.mode & 0o7777);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
