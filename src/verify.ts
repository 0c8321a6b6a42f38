import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { listSnapshots, resolveSnapshot } from './archive/catalog.js';
import type { Manifest, ManifestVolume } from './archive/manifest.js';
import type { TarStats } from './archive/tar-guard.js';
import { verifyVolume } from './archive/verify.js';
import type { Config } from './config/types.js';
import { dockerStatus } from './docker/client.js';
import { discoverStack } from './docker/discover.js';
import { execCapture } from './docker/exec.js';
import { extractInto, mountPointCommands } from './docker/extract.js';
import { HELPER_LABEL, helperOwner } from './docker/labels.js';
import { demuxLogs, runInVolume } from './docker/restore-volume.js';
import { findSelf } from './docker/self.js';
import { MOUNT, pickHelperImage } from './docker/volumes.js';
import { SidecarError } from './errors.js';
import { verifyDumpResult } from './moodle/verify-dump.js';
import type { Logger } from './observe/logger.js';
import { type Backend, isLocalBackend } from './storage/backend.js';

export interface VerifyOptions {
  docker: Docker;
  config: Config;
  backend: Backend;
  log: Logger;
  /** Id, unique prefix or `latest` (default); ignored with `all`. */
  snapshot?: string;
  /** Every snapshot at the target; incomplete and damaged entries count as failures. */
  all?: boolean;
  /** Restore drill: extract each archive into a scratch volume and check what came out. */
  deep?: boolean;
  signal?: AbortSignal;
  /** Bounds for the drill's throwaway MariaDB (defaults: 180 s to answer ping, 30 min for the check). */
  dbStartTimeoutMs?: number;
  dbCheckTimeoutMs?: number;
}

/** catalog: the snapshot directory itself; archive: level 1 (verifyVolume); drill: `--deep`. */
export type VerifyLevel = 'catalog' | 'archive' | 'drill';

export interface VerifyResult {
  snapshot: string;
  volume: string;
  level: VerifyLevel;
  ok: boolean;
  detail: string;
  code?: string;
  stats?: TarStats;
  ms: number;
}

export interface VerifyReport {
  ok: boolean;
  results: VerifyResult[];
}

/** Prefix of the drill's scratch volumes and containers (they also carry HELPER_LABEL). */
export const DRILL_PREFIX = 'moodle-backup-drill';

/**
 * Checks snapshots without touching the stack. Level 1 reads every archive once (size, sha256, decompression,
 * tar guard). `deep` then restores each archive into a scratch volume: entry counts must match what the
 * guard counted, and a MariaDB datadir is started in a throwaway server (the snapshot's own image, no
 * network) and every table must pass `mariadb-check`. Scratch containers and volumes are always removed.
 */
export async function runVerify(o: VerifyOptions): Promise<VerifyReport> {
  const results: VerifyResult[] = [];
  if (o.all) {
    const entries = await listSnapshots(o.backend);
    if (entries.length === 0) {
      throw new SidecarError(
        'SNAPSHOT_NOT_FOUND',
        `no snapshots at ${o.backend.location}`,
        'run `backup` first',
      );
    }
    for (const e of entries) {
      if (e.status === 'ok' && e.manifest) results.push(...(await verifyOne(o, e.manifest)));
      else {
        const detail =
          e.status === 'incomplete'
            ? 'incomplete: no manifest.json (a failed backup, or one still running)'
            : `damaged: ${e.error ?? 'manifest unreadable'}`;
        o.log.error({ step: 'verify', snapshot: e.id, status: e.status }, `snapshot ${e.id} ${detail}`);
        results.push({ snapshot: e.id, volume: '-', level: 'catalog', ok: false, detail, ms: 0 });
      }
    }
  } else {
    results.push(...(await verifyOne(o, await resolveSnapshot(o.backend, o.snapshot ?? 'latest'))));
  }
  return { ok: results.every((r) => r.ok), results };
}

async function verifyOne(o: VerifyOptions, m: Manifest): Promise<VerifyResult[]> {
  const out: VerifyResult[] = [];
  // A remote archive is downloaded once: checked while spooled, then the drill extracts the spooled copy.
  const spool = Boolean(o.deep) && !isLocalBackend(o.backend);
  const spoolDir = join(o.config.spoolDir, `verify-${m.id}-${rand()}`);
  if (spool) await mkdir(spoolDir, { recursive: true, mode: 0o700 });
  let helperImage: string | undefined;
  try {
    for (const v of m.volumes) {
      const spoolFile = spool ? join(spoolDir, v.file) : undefined;
      const t0 = Date.now();
      let stats: TarStats;
      try {
        stats = await verifyVolume(o.backend, m, v, {
          spoolTo: spoolFile,
          signal: o.signal,
          encryption: o.config.encryption,
        });
      } catch (err) {
        if (o.signal?.aborted) throw err;
        out.push(failure(m, v, 'archive', err, t0, o.log));
        continue;
      }
      const { files, dirs, symlinks, hardlinks, bytes } = stats;
      const detail = `sha256 ok, ${files} files, ${dirs} dirs, ${symlinks} symlinks, ${hardlinks} hard links, ${bytes} bytes`;
      out.push({ snapshot: m.id, volume: v.name, level: 'archive', ok: true, detail, stats, ms: ms(t0) });
      o.log.info(
        { step: 'verify', snapshot: m.id, volume: v.name, ...stats, ms: ms(t0) },
        `verified ${v.name}`,
      );
      if (!o.deep) continue;
      const t1 = Date.now();
      try {
        helperImage ??= await drillHelperImage(o, m);
        const source = spoolFile ? createReadStream(spoolFile) : await o.backend.get(`${m.id}/${v.file}`);
        const d = await drill(o, m, v, stats, helperImage, source).finally(() => source.destroy());
        out.push({ snapshot: m.id, volume: v.name, level: 'drill', ok: true, detail: d, ms: ms(t1) });
        o.log.info({ step: 'drill', snapshot: m.id, volume: v.name, ms: ms(t1) }, `drill ${v.name}: ${d}`);
      } catch (err) {
        if (o.signal?.aborted) throw err;
        out.push(failure(m, v, 'drill', err, t1, o.log));
      } finally {
        if (spoolFile) await rm(spoolFile, { force: true });
      }
    }
    if (m.database)
      out.push(
        ...(await verifyDumpResult(o, m, m.database, { failure, parseCheck, drillPrefix: DRILL_PREFIX })),
      );
  } finally {
    if (spool) await rm(spoolDir, { recursive: true, force: true });
  }
  return out;
}

function failure(
  m: Manifest,
  v: ManifestVolume,
  level: VerifyLevel,
  err: unknown,
  t0: number,
  log: Logger,
): VerifyResult {
  const code = err instanceof SidecarError ? err.code : undefined;
  const detail = (err as Error)?.message ?? String(err);
  log.error({ step: level === 'drill' ? 'drill' : 'verify', snapshot: m.id, volume: v.name, code }, detail);
  return { snapshot: m.id, volume: v.name, level, ok: false, detail, code, ms: ms(t0) };
}

/**
 * One volume's drill: a fresh labelled scratch volume, the same extraction as a restore, entry counts from
 * an independent `find`, and the database check when the archive holds a MariaDB datadir.
 */
async function drill(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  stats: TarStats,
  image: string,
  source: Readable,
): Promise<string> {
  const { docker } = o;
  const scratch = `${DRILL_PREFIX}-${rand()}-${v.name}`;
  try {
    await docker.createVolume({ Name: scratch, Labels: { [HELPER_LABEL]: helperOwner() } });
    await extractInto(docker, scratch, image, source, m, v, o.signal, o.config.encryption);
    const got = await countEntries(docker, scratch, image);
    const want = {
      files: stats.files + stats.hardlinks,
      dirs: stats.dirs - (stats.root ? 1 : 0),
      symlinks: stats.symlinks,
    };
    const diff = (Object.keys(want) as (keyof typeof want)[])
      .filter((k) => got[k] !== want[k])
      .map((k) => `${k}: ${got[k]} extracted, ${want[k]} in the archive`);
    if (diff.length > 0) {
      throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: extraction differs (${diff.join(', ')})`);
    }
    const counts = `extracted ${got.files} files, ${got.dirs} dirs, ${got.symlinks} symlinks`;
    if (!stats.mariadbDatadir) return counts;
    // What restore does after extraction: the mount point gets its recorded owner and mode (Docker leaves
    // it root-owned), so a server that runs as its own user can write there.
    if (stats.root) await runInVolume(docker, scratch, image, mountPointCommands(stats.root).join(' && '));
    return `${counts}; ${await checkDatabase(o, m, v, scratch)}`;
  } finally {
    await docker
      .getVolume(scratch)
      .remove({ force: true })
      .catch((err: unknown) => {
        if (dockerStatus(err) !== 404)
          o.log.warn({ step: 'drill', volume: scratch, err }, `could not remove scratch volume ${scratch}`);
      });
  }
}

/** Files (hard links included), directories and symlinks below the mount point, NUL-separated so any name counts once. */
async function countEntries(
  docker: Docker,
  volume: string,
  image: string,
): Promise<{ files: number; dirs: number; symlinks: number }> {
  const n = (t: string) => `"$(find . -mindepth 1 -type ${t} -print0 | tr -dc '\\000' | wc -c)"`;
  const script = `cd ${MOUNT} && printf 'COUNTS %s %s %s\\n' ${n('f')} ${n('d')} ${n('l')}`;
  const text = await runInVolume(docker, volume, image, script, { readOnly: true });
  const match = text.match(/COUNTS\s+(\d+)\s+(\d+)\s+(\d+)/);
  if (!match) throw new Error(`counting entries in ${volume} failed: ${text.trim().slice(-300)}`);
  return { files: Number(match[1]), dirs: Number(match[2]), symlinks: Number(match[3]) };
}

/** `sh -c` prelude that runs the first tool present of two (mariadb-* names, else the older mysql* ones). */
const EITHER =
  'a=$1; b=$2; shift 2; if command -v "$a" >/dev/null 2>&1; then exec "$a" "$@"; fi; exec "$b" "$@"';

/**
 * Starts the snapshot's own MariaDB image on the scratch volume, without network and with
 * `--skip-grant-tables` (the drill cannot know the root password), and requires every table to check OK.
 */
async function checkDatabase(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  scratch: string,
): Promise<string> {
  const { docker } = o;
  const mount = v.mountedAt
    .map((at) => ({ at, svc: m.stack.services.find((s) => s.service === at.service) }))
    .find((x) => x.svc);
  if (!mount?.svc) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name} holds a MariaDB datadir, but the manifest names no service that mounted it`,
    );
  }
  const { svc, at } = mount;
  let info: Docker.ImageInspectInfo;
  try {
    info = await docker.getImage(svc.imageId).inspect();
  } catch (err) {
    if (dockerStatus(err) !== 404) throw err;
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name}: the database image ${svc.image} (${svc.imageId}) is not present locally; the drill never pulls`,
      `pull ${svc.image} first`,
    );
  }
  const c = await docker.createContainer({
    name: `${DRILL_PREFIX}-${rand()}-db`,
    Image: svc.imageId,
    Cmd: [...(info.Config?.Cmd ?? []), '--skip-grant-tables'],
    // Bitnami's entrypoint refuses to start without a root password unless told an empty one is fine.
    Env: ['ALLOW_EMPTY_PASSWORD=yes'],
    Labels: { [HELPER_LABEL]: helperOwner() },
    NetworkDisabled: true,
    HostConfig: {
      NetworkMode: 'none',
      // nocopy: Docker must not copy the image's files into the scratch volume.
      Binds: [`${scratch}:${at.destination}:nocopy`],
    },
  });
  try {
    await c.start();
    await waitForPing(o, c, v);
    const r = await execCapture(
      docker,
      c.id,
      ['sh', '-c', EITHER, 'drill', 'mariadb-check', 'mysqlcheck', '-uroot', '--all-databases'],
      o.dbCheckTimeoutMs ?? 30 * 60_000,
    );
    if (r.exitCode !== 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: mariadb-check exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-400)}`,
      );
    }
    const { tables, bad } = parseCheck(r.stdout);
    if (tables === 0) {
      throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: mariadb-check listed no tables`);
    }
    if (bad.length > 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: ${bad.length} of ${tables} tables failed mariadb-check: ${bad.slice(0, 5).join('; ')}`,
      );
    }
    return `mariadb-check: ${tables} tables OK (${svc.image})`;
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

async function waitForPing(o: VerifyOptions, c: Docker.Container, v: ManifestVolume): Promise<void> {
  const timeout = o.dbStartTimeoutMs ?? 180_000;
  const end = Date.now() + timeout;
  let last = '';
  while (Date.now() < end) {
    o.signal?.throwIfAborted();
    const state = (await c.inspect()).State;
    if (!state.Running) {
      const logs = demuxLogs((await c.logs({ stdout: true, stderr: true, tail: 15 })) as unknown as Buffer);
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: the MariaDB server exited (${state.ExitCode}) before answering: ${logs.trim().slice(-600)}`,
      );
    }
    const r = await execCapture(
      o.docker,
      c.id,
      ['sh', '-c', EITHER, 'drill', 'mariadb-admin', 'mysqladmin', '-uroot', 'ping'],
      10_000,
    ).catch((err: Error) => ({ exitCode: -1, stdout: '', stderr: err.message }));
    if (r.exitCode === 0) return;
    last = (r.stderr || r.stdout).trim();
    await sleep(500);
  }
  throw new SidecarError(
    'INTEGRITY_FAILED',
    `volume ${v.name}: the MariaDB server did not answer ping within ${timeout / 1000} s: ${last.slice(-300)}`,
  );
}

/**
 * mariadb-check prints `db.table   OK`, or `db.table` followed by `Msg_type : text` lines. A table passes
 * when its status is OK and no `error` line follows; warnings alone do not fail it but are reported.
 */
export function parseCheck(output: string): { tables: number; bad: string[] } {
  const tables: { name: string; ok: boolean; errors: string[]; notes: string[] }[] = [];
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    const msg = line.match(/^(\w+)\s*:\s?(.*)$/);
    const current = tables[tables.length - 1];
    if (msg && current && !/^\S+\.\S+/.test(line)) {
      const [, type = '', text = ''] = msg;
      const t = type.toLowerCase();
      if (t === 'status') {
        if (text.trim() === 'OK') current.ok = true;
        else current.errors.push(text.trim());
      } else if (t === 'error') current.errors.push(text.trim());
      else current.notes.push(`${type}: ${text.trim()}`);
      continue;
    }
    const m = line.match(/^(\S+)\s+OK\s*$/);
    tables.push({ name: m?.[1] ?? line.trim(), ok: Boolean(m), errors: [], notes: [] });
  }
  const bad = tables
    .filter((t) => !t.ok || t.errors.length > 0)
    .map((t) => `${t.name} (${[...t.notes, ...t.errors].join(', ') || 'no OK'})`);
  return { tables: tables.length, bad };
}

/** The image for the drill's helpers: as for restore, else an image of the snapshot present locally. */
async function drillHelperImage(o: VerifyOptions, m: Manifest): Promise<string> {
  if (o.config.helperImage) return o.config.helperImage;
  const self = await findSelf(o.docker);
  if (self) return self.image;
  try {
    const stack = await discoverStack(
      o.docker,
      { project: o.config.project ?? m.project, volumes: [] },
      self,
    );
    return pickHelperImage(o.config, undefined, stack);
  } catch {
    for (const s of m.stack.services) {
      if (
        await o.docker
          .getImage(s.imageId)
          .inspect()
          .catch(() => null)
      )
        return s.imageId;
    }
  }
  throw new SidecarError(
    'DISCOVERY_FAILED',
    'no image for the restore drill helper containers',
    'set BACKUP_HELPER_IMAGE',
  );
}

function rand(): string {
  return Math.random().toString(36).slice(2, 8);
}

function ms(t0: number): number {
  return Date.now() - t0;
}
