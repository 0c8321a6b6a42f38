import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listSnapshots } from '../archive/catalog.js';
import { archiveFingerprint } from '../archive/fingerprint.js';
import type { ManifestVolume } from '../archive/manifest.js';
import { HashTap } from '../archive/tap.js';
import type { VolumeExcludes } from '../moodle/excludes.js';
import type { VolumeTarget } from '../stack/discover.js';
import { copyObject, isLocalBackend } from '../storage/backend.js';
import { listTree } from '../volume/tree-listing.js';
import type { BackupRun, ReuseState } from './context.js';
import { manifestVolume } from './stream.js';

/**
 * A volume whose files did not change since the newest snapshot (Moodle's code between upgrades) gets that
 * snapshot's archive again — a hard link on a local target, a server-side copy on S3 — instead of being
 * compressed again: its metadata listing costs a tenth of reading it (docs/design.md, "Unchanged volumes").
 * Each snapshot still holds its own archive, so verify, restore and prune need not know.
 */

/**
 * A change this recent may share its time stamp with a later one (ctime ticks coarsely; a volume on a file
 * server carries the server's clock): such a listing is not recorded, so it can never vouch for a later tree.
 */
const RACY_MS = 2_000;

/**
 * The volumes reuse applies to: read as a directory (the listing needs one), not the dataroot (sessions and
 * caches change it between any two backups; its Moodle files have the store), not the database server's
 * (every shutdown rewrites its files): listing those would only add downtime. A passphrase has no public
 * part to compare, so a passphrase-encrypted run reuses nothing.
 */
export function reusable(run: BackupRun, v: VolumeTarget, dir: string | null | undefined): dir is string {
  if (run.ctx.config.reuseArchives === 'off' || !dir) return false;
  if (run.encryption && !run.encryption.recipients) return false;
  if (run.store?.volumes.has(v.name)) return false;
  if (run.mp.site.moodle?.dataroot?.volume?.name === v.name) return false;
  return !run.mp.site.database?.container.mounts.some((m) => m.volume === v.name);
}

/** Before the stack stops: for each volume reuse applies to, the newest snapshot's archive of it, if whole. */
export async function findReusable(run: BackupRun, dirs: Map<string, string | null>): Promise<ReuseState> {
  const state: ReuseState = { candidates: new Map(), copies: new Map() };
  const volumes = run.mp.tarVolumes.filter((v) => reusable(run, v, dirs.get(v.name)));
  if (volumes.length === 0) return state;
  const snapshots = (await listSnapshots(run.ctx.backend)).filter((e) => e.status === 'ok');
  for (const v of volumes) {
    const entry = snapshots.find((e) => e.manifest?.volumes.some((m) => m.dockerName === v.name));
    const volume = entry?.manifest?.volumes.find((m) => m.dockerName === v.name);
    if (!entry || !volume?.fingerprint || volume.blobs) continue;
    const key = `${entry.id}/${volume.file}`;
    const stored = entry.objects.find((o) => o.key === key);
    if (stored?.size !== volume.storedBytes || !(await intact(run, key, volume))) continue;
    state.candidates.set(v.name, { snapshot: entry.id, volume });
  }
  return state;
}

/**
 * A local archive is read once, before the stop (~0.13 s for 84 MB): a damaged one is compressed afresh
 * rather than linked into one more snapshot. An S3 object is taken at its size: the server checks what it
 * stores, and reading it back would cost the download the copy saves.
 */
async function intact(run: BackupRun, key: string, volume: ManifestVolume): Promise<boolean> {
  const { backend, log } = run.ctx;
  if (!isLocalBackend(backend)) return true;
  const tap = new HashTap();
  try {
    await pipeline(await backend.get(key), tap, new Writable({ write: (_c, _e, cb) => cb() }));
  } catch (err) {
    log.warn({ step: 'plan', archive: key, err }, `${key} could not be read: not reused`);
    return false;
  }
  if (tap.digest() === volume.sha256) return true;
  log.warn({ step: 'plan', archive: key }, `${key} does not match its manifest's sha256: not reused`);
  return false;
}

/**
 * Inside the window, right before the volume would be read: its fingerprint now, or undefined when reuse
 * does not apply, the listing failed (then the volume is just read) or a change is too recent to vouch for.
 */
export async function fingerprintNow(
  run: BackupRun,
  v: VolumeTarget,
  dir: string | null | undefined,
  excludes: VolumeExcludes,
): Promise<string | undefined> {
  if (!reusable(run, v, dir)) return undefined;
  const { config, log } = run.ctx;
  const t0 = Date.now();
  try {
    const listing = await listTree(dir);
    log.debug({ step: 'read', volume: v.short, entries: listing.entries, ms: Date.now() - t0 }, 'listed');
    if (listing.newestChangeMs >= t0 - RACY_MS) return undefined;
    return archiveFingerprint(listing.digest, {
      excluded: excludes.rules,
      codec: run.codec.name,
      level: config.compressionLevel,
      recipients: run.encryption?.recipients ?? null,
    });
  } catch (err) {
    log.warn({ step: 'read', volume: v.short, err }, `${v.short}: could not list the volume, reading it`);
    return undefined;
  }
}

/**
 * The earlier archive as this snapshot's `file`, when its fingerprint is `fingerprint`: copied now on a
 * direct target (a failed copy falls back to reading), after the stack is back on a spooled one
 * (copyReused). null: read the volume.
 */
export async function reuseArchive(
  run: BackupRun,
  v: VolumeTarget,
  file: string,
  fingerprint: string | undefined,
  excludes: VolumeExcludes,
): Promise<ManifestVolume | null> {
  const { backend, log } = run.ctx;
  const c = run.reuse?.candidates.get(v.name);
  if (!c || !fingerprint || c.volume.fingerprint !== fingerprint) return null;
  const from = `${c.snapshot}/${c.volume.file}`;
  if (run.spool) run.reuse?.copies.set(file, from);
  else {
    try {
      await copyObject(backend, from, `${run.id}/${file}`, {
        contentLength: c.volume.storedBytes,
        uploads: run.state,
      });
    } catch (err) {
      log.warn({ step: 'read', volume: v.short, err }, `${v.short}: could not reuse ${from}, reading it`);
      return null;
    }
  }
  const how = `${isLocalBackend(backend) ? 'linked' : 'copied'}${run.spool ? ' after the window' : ''}`;
  log.info(
    { step: 'read', volume: v.short, reusedFrom: c.snapshot, storedBytes: c.volume.storedBytes },
    `${v.short}: unchanged since ${c.snapshot}, archive reused (${how})`,
  );
  // The earlier read's figures: the bytes are the same.
  const was = c.volume;
  const read = {
    rawBytes: was.rawBytes,
    storedBytes: was.storedBytes,
    sha256: was.sha256,
    excludedEntries: was.excludedEntries ?? 0,
    excludedBytes: was.excludedBytes ?? 0,
    ms: 0,
    via: 'mount' as const,
    viaNode: false,
  };
  return { ...manifestVolume(v, file, read, excludes), fingerprint, reusedFrom: c.snapshot };
}

/** Spooled runs, after the stack is back: the reused archives' copies, in place of their uploads. */
export async function copyReused(run: BackupRun, v: { file: string; storedBytes: number }): Promise<boolean> {
  const from = run.reuse?.copies.get(v.file);
  if (!from) return false;
  await copyObject(run.ctx.backend, from, `${run.id}/${v.file}`, {
    contentLength: v.storedBytes,
    uploads: run.state,
  });
  return true;
}
