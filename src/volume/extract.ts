import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import { getCodec } from '../archive/codec.js';
import { decryptStage } from '../archive/encryption.js';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import { HashTap } from '../archive/tap.js';
import { TarGuard, type TarStats } from '../archive/tar-guard.js';
import { guardStream } from '../archive/tar-guard-stream.js';
import { SidecarError, throwFirstCause } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import { MOUNT } from './archive-api.js';
import { extractToDir } from './dir-untar.js';
import { putVolumeTar } from './restore-volume.js';

/**
 * Stored bytes → sha256 re-check → [age decryption] → decompress → Docker's putArchive into the volume, or
 * (with `dir`) → tar guard → GNU tar into the volume's directory. Shared by restore and the restore drill
 * (`verify --deep`). Usually the caller has verified the archive (verifyVolume) beforehand; unpacking into a
 * staging directory needs no separate pass (`verified` false): the sha256, the decompression and the in-line
 * guard here are the same checks, and the staging copy is discarded when one fails.
 * Returns what the in-line guard saw (with `dir`).
 */
export async function extractInto(
  docker: Docker,
  volume: string,
  image: string,
  source: Readable,
  manifest: Manifest,
  v: ManifestVolume,
  signal?: AbortSignal,
  encryption?: EncryptionConfig,
  /** The volume's directory (the `mount` write path): GNU tar unpacks there, behind the in-line tar guard. */
  dir?: string | null,
  /** A pass-through that watches the raw tar go by (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream,
  /** false: no verifyVolume pass came first, so a sha256 mismatch is against the manifest. */
  verified = true,
): Promise<TarStats | undefined> {
  const tap = new HashTap();
  const guard = dir ? new TarGuard(v.name) : undefined;
  const tar = new PassThrough();
  const decrypt = decryptStage(
    { snapshot: manifest.id, volume: v.name, file: v.file },
    manifest.encryption,
    encryption,
  );
  const feed = pipeline(
    [
      source,
      tap,
      ...(decrypt ? [decrypt] : []),
      getCodec(manifest.codec).decompress(),
      ...(progress ? [progress] : []),
      ...(guard ? [guardStream(v.name, guard)] : []),
      tar,
    ],
    signal ? { signal } : {},
  );
  const write = dir ? extractToDir(dir, tar) : putVolumeTar(docker, volume, image, tar);
  const put = write.catch((err: unknown) => {
    tar.destroy(err as Error);
    throw err;
  });
  throwFirstCause(await Promise.allSettled([feed, put]));
  if (tap.digest() !== v.sha256) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      verified
        ? `volume ${v.name}: the archive changed between verification and restore (sha256 ${tap.digest()})`
        : `snapshot ${manifest.id}, volume ${v.name}: archive ${v.file} has sha256 ${tap.digest()}, the manifest says ${v.sha256}`,
    );
  }
  return guard?.stats;
}

/**
 * Shell commands that give the mount point the owner, mode and mtime of the archive's `./` entry: Docker's
 * unpacking leaves the mount point alone (a fresh volume stays root-owned). Run after extractInto.
 */
export function mountPointCommands(root: TarStats['root']): string[] {
  if (!root) return [];
  const t = new Date(root.mtime * 1000).toISOString().replace('T', ' ').slice(0, 19);
  return [
    `chown ${root.uid}:${root.gid} ${MOUNT}`,
    `chmod ${root.mode.toString(8)} ${MOUNT}`,
    `TZ=UTC0 touch -c -d '${t}' ${MOUNT}`,
  ];
}
