import { createReadStream, createWriteStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';
import { SidecarError } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import type { Backend } from '../storage/backend.js';
import { spoolError } from '../storage/spool-error.js';
import { getCodec } from './codec.js';
import { assertDecryptable, decryptStage } from './encryption.js';
import type { Manifest, ManifestVolume } from './manifest.js';
import { HashTap } from './tap.js';
import { TarGuard, type TarStats } from './tar-guard.js';

export interface VolumeCheck {
  volume: string;
  ok: boolean;
  stats?: TarStats;
  error?: string;
  code?: string;
}

function integrity(volume: string, snapshot: string, what: string): SidecarError {
  return new SidecarError(
    'INTEGRITY_FAILED',
    `snapshot ${snapshot}, volume ${volume}: ${what}`,
    'this snapshot cannot be restored as it is; pick another one (`snapshots`)',
  );
}

function shaMismatch(v: ManifestVolume, manifest: Manifest, actual: string): SidecarError {
  return integrity(
    v.name,
    manifest.id,
    `archive ${v.file} has sha256 ${actual}, the manifest says ${v.sha256}`,
  );
}

/** Parses a tar stream to its end, checking every entry with the guard; bodies are drained, not kept. */
function tarSink(guard: TarGuard): Writable {
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    // Destroying the parser mid-body makes the entry stream error; the pipeline reports the cause.
    stream.on('error', () => undefined);
    try {
      guard.check(header);
    } catch (err) {
      stream.resume();
      ex.destroy(err as Error);
      return;
    }
    stream.on('end', next);
    stream.resume();
  });
  return ex as unknown as Writable;
}

/** How a stored archive (or dump) is read to be checked: where the checked bytes go, and who watches. */
export interface StoredReadOptions {
  spoolTo?: string;
  signal?: AbortSignal;
  encryption?: EncryptionConfig;
  /** Watches the raw bytes (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream;
  /** Watches the stored bytes as they are spooled (the terminal's progress line). */
  download?: NodeJS.ReadWriteStream;
}

/**
 * Reads one stored archive once: size against the manifest, sha256 of the stored bytes, decompression,
 * and every tar entry through the guard. With `spoolTo`, the verified stored bytes are also written to that
 * file so that the restore applies exactly what was checked.
 */
export async function verifyVolume(
  backend: Backend,
  manifest: Manifest,
  v: ManifestVolume,
  opts: StoredReadOptions = {},
): Promise<TarStats> {
  const key = `${manifest.id}/${v.file}`;
  // Throws at once, before any byte is read, when the snapshot is encrypted and no key is configured.
  const decrypt = () =>
    decryptStage(
      { snapshot: manifest.id, volume: v.name, file: v.file },
      manifest.encryption,
      opts.encryption,
    );
  assertDecryptable(manifest.id, manifest.encryption, opts.encryption);
  const info = await backend.stat(key);
  if (!info) throw integrity(v.name, manifest.id, `archive ${v.file} is missing`);
  if (info.size !== v.storedBytes) {
    throw integrity(
      v.name,
      manifest.id,
      `archive ${v.file} has ${info.size} bytes, the manifest says ${v.storedBytes} (truncated or replaced)`,
    );
  }
  const tap = new HashTap();
  const guard = new TarGuard(v.name);
  const source: Readable = await backend.get(key);
  const codec = getCodec(manifest.codec);
  const signal = opts.signal ? { signal: opts.signal } : {};
  const watch = optional(opts.progress);
  try {
    if (opts.spoolTo) {
      // Download once (hashing on the way), then check the local copy: the restore applies exactly these bytes.
      const spoolTo = opts.spoolTo;
      await pipeline(
        [source, tap, ...optional(opts.download), createWriteStream(spoolTo, { mode: 0o600 })],
        signal,
      ).catch((err: unknown) => {
        throw spoolError(err, spoolTo);
      });
      if (tap.digest() !== v.sha256) throw shaMismatch(v, manifest, tap.digest());
      await pipeline(
        [
          createReadStream(opts.spoolTo),
          ...optional(decrypt()),
          codec.decompress(),
          ...watch,
          tarSink(guard),
        ],
        signal,
      );
    } else {
      await pipeline(
        [source, tap, ...optional(decrypt()), codec.decompress(), ...watch, tarSink(guard)],
        signal,
      );
    }
  } catch (err) {
    source.destroy();
    if (err instanceof SidecarError) throw err;
    throw integrity(
      v.name,
      manifest.id,
      `archive ${v.file} does not decompress as ${manifest.codec} tar (${(err as Error).message})`,
    );
  }
  if (tap.digest() !== v.sha256) throw shaMismatch(v, manifest, tap.digest());
  return guard.stats;
}

function optional<T>(x: T | undefined): T[] {
  return x === undefined ? [] : [x];
}

/** Checks every volume (all of them, even after a failure) and reports each. */
export async function verifySnapshot(
  backend: Backend,
  manifest: Manifest,
  volumes?: string[],
): Promise<VolumeCheck[]> {
  const out: VolumeCheck[] = [];
  for (const v of manifest.volumes) {
    if (volumes && !volumes.includes(v.name)) continue;
    try {
      out.push({ volume: v.name, ok: true, stats: await verifyVolume(backend, manifest, v) });
    } catch (err) {
      out.push({
        volume: v.name,
        ok: false,
        error: (err as Error).message,
        code: (err as SidecarError).code,
      });
    }
  }
  return out;
}
