import { createReadStream, createWriteStream } from 'node:fs';
import { type Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { getCodec } from '../archive/codec.js';
import { assertDecryptable, decryptStage } from '../archive/encryption.js';
import type { Manifest, ManifestDatabase } from '../archive/manifest.js';
import { HashTap } from '../archive/tap.js';
import type { StoredReadOptions } from '../archive/verify.js';
import { SidecarError, throwFirstCause } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import { dockerStatus } from '../docker/client.js';
import { execStream } from '../docker/exec-stream.js';
import type { Logger } from '../observe/logger.js';
import type { ServiceContainer } from '../stack/discover.js';
import type { Backend } from '../storage/backend.js';
import { demuxLogs } from '../volume/restore-volume.js';
import type { DatabaseEngine } from './engine.js';
import { engineForDump } from './find.js';

function where(manifest: Manifest, db: ManifestDatabase) {
  return { snapshot: manifest.id, volume: db.volume.name, file: db.file };
}

function optional<T>(x: T | undefined): T[] {
  return x === undefined ? [] : [x];
}

function integrity(manifest: Manifest, what: string): SidecarError {
  return new SidecarError(
    'INTEGRITY_FAILED',
    `snapshot ${manifest.id}, database dump: ${what}`,
    'this snapshot cannot be restored as it is; pick another one (`snapshots`)',
  );
}

/** Row counts that differ between what the dump holds and what the manifest (or server) says. */
export function rowDifferences(expected: Record<string, number>, actual: Record<string, number>): string[] {
  const out: string[] = [];
  for (const [t, n] of Object.entries(expected)) {
    if (actual[t] !== n) out.push(`${t}: ${n} expected, ${actual[t] ?? 'missing'}`);
  }
  for (const t of Object.keys(actual)) if (!(t in expected)) out.push(`${t}: not in the snapshot`);
  return out;
}

/**
 * Reads the dump once before anything is touched: size, sha256, decompression and the rows it inserts per
 * table against the manifest. With `spoolTo`, the checked bytes are kept for the restore to apply.
 */
export async function verifyDump(
  backend: Backend,
  manifest: Manifest,
  db: ManifestDatabase,
  opts: StoredReadOptions = {},
): Promise<{ tables: number; rows: number }> {
  // Before any byte is read: an encrypted snapshot without a key is refused here.
  const decrypt = () => optional(decryptStage(where(manifest, db), manifest.encryption, opts.encryption));
  assertDecryptable(manifest.id, manifest.encryption, opts.encryption);
  const key = `${manifest.id}/${db.file}`;
  const info = await backend.stat(key);
  if (!info) throw integrity(manifest, `archive ${db.file} is missing`);
  if (info.size !== db.storedBytes)
    throw integrity(
      manifest,
      `archive ${db.file} has ${info.size} bytes, the manifest says ${db.storedBytes}`,
    );
  const tap = new HashTap();
  const rows = engineForDump(db.kind).rowCounter();
  const signal = opts.signal ? { signal: opts.signal } : {};
  const sink = new Writable({
    write(_chunk, _enc, cb) {
      cb();
    },
  });
  const source = await backend.get(key);
  const watch = optional(opts.progress);
  try {
    if (opts.spoolTo) {
      await pipeline(
        [source, tap, ...optional(opts.download), createWriteStream(opts.spoolTo, { mode: 0o600 })],
        signal,
      );
      await pipeline(
        [
          createReadStream(opts.spoolTo),
          ...decrypt(),
          getCodec(manifest.codec).decompress(),
          ...watch,
          rows,
          sink,
        ],
        signal,
      );
    } else {
      await pipeline(
        [source, tap, ...decrypt(), getCodec(manifest.codec).decompress(), ...watch, rows, sink],
        signal,
      );
    }
  } catch (err) {
    source.destroy();
    if (err instanceof SidecarError) throw err;
    throw integrity(
      manifest,
      `archive ${db.file} does not decompress as ${manifest.codec} (${(err as Error).message})`,
    );
  }
  if (tap.digest() !== db.sha256)
    throw integrity(
      manifest,
      `archive ${db.file} has sha256 ${tap.digest()}, the manifest says ${db.sha256}`,
    );
  const diff = rowDifferences(db.tables, rows.tables);
  if (diff.length > 0)
    throw integrity(manifest, `rows differ from the manifest (${diff.slice(0, 5).join('; ')})`);
  return {
    tables: Object.keys(rows.tables).length,
    rows: Object.values(rows.tables).reduce((a, b) => a + b, 0),
  };
}

/**
 * Waits until the server in a freshly started container answers with the container's credentials and
 * stays up (an image's first-start initialisation may run a temporary server and restart it).
 */
async function waitForServer(
  docker: Docker,
  engine: DatabaseEngine,
  c: Pick<ServiceContainer, 'id' | 'name'>,
  timeoutMs: number,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  let lastUptime = -1;
  while (Date.now() < end) {
    try {
      const uptime = await engine.uptime(docker, c.id);
      // Two answers from the same server process, a second apart, with its init done.
      if (lastUptime >= 0 && uptime > lastUptime && uptime >= 2) return;
      lastUptime = uptime;
    } catch (err) {
      last = (err as Error).message;
      lastUptime = -1;
      const state = (await docker.getContainer(c.id).inspect()).State;
      if (!state.Running && !state.Restarting) {
        const logs = (await docker
          .getContainer(c.id)
          .logs({ stdout: true, stderr: true, tail: 15 })) as unknown as Buffer;
        throw new SidecarError(
          'RESTORE_FAILED',
          `the database in ${c.name} exited (${state.ExitCode}) on its fresh datadir: ${demuxLogs(logs).trim().slice(-600)}`,
        );
      }
    }
    await sleep(1000);
  }
  throw new SidecarError(
    'RESTORE_FAILED',
    `the database in ${c.name} did not come up on its fresh datadir within ${timeoutMs / 1000} s: ${last}`,
  );
}

/**
 * Online snapshot restore, database part: the container starts on its emptied datadir (the image creates
 * a fresh one with the users from its environment), the dump is streamed into the client via exec with the
 * sha256 checked on the way, and the server's row counts must equal the manifest's.
 */
export async function loadDump(
  docker: Docker,
  c: Pick<ServiceContainer, 'id' | 'name'>,
  source: Readable,
  manifest: Manifest,
  db: ManifestDatabase,
  log: Logger,
  signal?: AbortSignal,
  encryption?: EncryptionConfig,
  /** Watches the raw dump as it is fed (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream,
): Promise<void> {
  const t0 = Date.now();
  const engine = engineForDump(db.kind);
  await startFresh(docker, engine, c, log);
  await streamDump(docker, engine, c, source, manifest, db, signal, encryption, progress);
  const diff = rowDifferences(db.tables, await engine.countRows(docker, c.id, Object.keys(db.tables)));
  if (diff.length > 0) {
    throw new SidecarError(
      'RESTORE_FAILED',
      `the loaded database differs from the snapshot: ${diff.slice(0, 5).join('; ')}`,
    );
  }
  log.info(
    { step: 'restore', container: c.name, tables: Object.keys(db.tables).length, ms: Date.now() - t0 },
    `loaded ${db.file} into ${c.name}; row counts match the snapshot`,
  );
}

/** Starts the database container on its emptied datadir and waits until the fresh server answers. */
async function startFresh(
  docker: Docker,
  engine: DatabaseEngine,
  c: Pick<ServiceContainer, 'id' | 'name'>,
  log: Logger,
): Promise<void> {
  const t0 = Date.now();
  await docker
    .getContainer(c.id)
    .start()
    .catch((err: unknown) => {
      if (dockerStatus(err) !== 304) throw err;
    });
  await waitForServer(docker, engine, c, 180_000);
  log.info({ step: 'restore', container: c.name, ms: Date.now() - t0 }, `fresh datadir ready in ${c.name}`);
}

/** Streams the stored dump (sha256 checked on the way) into the server's client through exec. */
async function streamDump(
  docker: Docker,
  engine: DatabaseEngine,
  c: Pick<ServiceContainer, 'id' | 'name'>,
  source: Readable,
  manifest: Manifest,
  db: ManifestDatabase,
  signal?: AbortSignal,
  encryption?: EncryptionConfig,
  progress?: NodeJS.ReadWriteStream,
): Promise<void> {
  const decrypt = optional(decryptStage(where(manifest, db), manifest.encryption, encryption));
  const ex = await execStream(docker, c.id, engine.loadCommand(), { stdin: true });
  ex.output.resume();
  const tap = new HashTap();
  let settled: PromiseSettledResult<unknown>[];
  try {
    const feed = pipeline(
      [source, tap, ...decrypt, getCodec(manifest.codec).decompress(), ...optional(progress), ex.socket],
      signal ? { signal } : {},
    );
    settled = await Promise.allSettled([feed, finished(ex.output)]);
  } finally {
    ex.socket.destroy();
  }
  // A client that stops at the first error (psql with ON_ERROR_STOP) closes its stdin while the dump is still
  // being fed: the write fails with EPIPE, and the client's exit code and message are what explains it.
  const [fed] = settled;
  if (fed?.status === 'rejected' && !closedStdin(fed.reason)) throwFirstCause(settled);
  let code = await ex.exitCode();
  for (let i = 0; i < 50 && code === -1; i++) {
    await sleep(100);
    code = await ex.exitCode();
  }
  if (code !== 0) {
    throw new SidecarError(
      'RESTORE_FAILED',
      `loading the dump into ${c.name} failed (exit ${code}): ${ex.output.stderr.trim().slice(-500)}`,
    );
  }
  throwFirstCause(settled);
  if (tap.digest() !== db.sha256) {
    throw integrity(
      manifest,
      `the archive changed between verification and restore (sha256 ${tap.digest()})`,
    );
  }
}

/** The write side failed because the other end closed it (the client exited). */
function closedStdin(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ECONNRESET' || code === 'ERR_STREAM_DESTROYED';
}
