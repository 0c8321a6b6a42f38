import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { ManifestDatabase, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { isSidecarError, SidecarError } from '../common/errors.js';
import { inParallel } from '../common/parallel.js';
import { afterStart, type StartReport } from '../moodle/after-start.js';
import { blobsLabel, dumpLabel, manifestTotals, ProgressBoard } from '../observe/progress.js';
import type { ServiceContainer } from '../stack/discover.js';
import { stopOrder } from '../stack/plan.js';
import { quiesce } from '../stack/quiesce.js';
import { ownedByMe, StateStore } from '../stack/state.js';
import { extractInto } from '../volume/extract.js';
import { volumeDir } from '../volume/mount-dir.js';
import { ensureVolume, putVolumeTar } from '../volume/restore-volume.js';
import type { SwapRecord } from '../volume/swap.js';
import { type BlobsExtract, type RestoreBlobs, withBlobs } from './blobs.js';
import { discardStaged, restoreFileVolume, type Staged, stage } from './mount.js';
import { restoreDatabase } from './online.js';
import type { RestoreTarget } from './plan.js';
import { RestoreProgress } from './progress.js';
import { deleteOldContent } from './steps.js';
import type { RestoreOptions } from './types.js';

export interface ApplyInput extends RestoreTarget {
  /** Where the verified archives were spooled (remote targets); undefined = read from the backend again. */
  spoolDir: string | undefined;
  safety: string | undefined;
  /** What the verification found in each archive (not there: unpacked unverified into staging, ahead). */
  verified: Record<string, TarStats>;
  /** Volumes unpacked into their staging directories before the stack stops (run.ts, stageAheadSet). */
  ahead: Set<string>;
  /** Image for the helper containers. */
  image: string;
  /** The store's index and the blob sets of incremental volumes, read and checked with the archives. */
  blobs?: RestoreBlobs;
}

/** Volumes unpacked ahead at once (stageAhead). */
const STAGE_AT_ONCE = 2;

/** What the volume steps leave for after the restart. */
interface Leftovers {
  /** Volumes whose old content (volume/swap.ts OLD) is deleted once the stack runs again. */
  deleteLater: { name: string; rec: SwapRecord }[];
  /** Docker volumes that hold a MariaDB datadir: the start waits for that server. */
  dbVolumes: string[];
}

/**
 * The changing part of a restore: record it in the state file, stop what mounts the volumes, restore each
 * volume and the dump, start the stack again whatever happened, then either name every volume's state and
 * the roll-back, or check MariaDB and Moodle while the old content is deleted.
 */
export async function apply(
  o: RestoreOptions,
  a: ApplyInput,
): Promise<{ downtimeMs: number; report: StartReport }> {
  const md = a.manifest.database;
  const db = md && a.plan.volumes.some((v) => v.name === md.volume.name) ? md : null;
  const state = new StateStore(o.config.stateDir);
  const progress = new RestoreProgress(state, [
    ...a.selected.map((v) => v.name),
    ...(db ? [db.volume.name] : []),
  ]);
  await state.write({
    runId: `restore-${a.manifest.id}`,
    operation: 'restore',
    startedAt: new Date().toISOString(),
    ...ownedByMe(),
    quiesced: [],
    volumes: { ...progress.volumes },
    safetySnapshot: a.safety,
  });
  // One progress board for the whole restore: volumes unpacked ahead draw their lines before the stop.
  const board = applyBoard(a, db);
  const staged = await stageAhead(o, a, progress, board).catch(async (err: unknown) => {
    // Nothing was stopped and no volume changed: there is nothing for a later start to settle. A wrong key
    // keeps its own code (DECRYPTION_FAILED, its message says nothing changed), as the verify pass gives it.
    await state.clear();
    if (isSidecarError(err, 'DECRYPTION_FAILED')) throw err;
    return failedMidway(o, a, progress, err);
  });
  const users = stopOrder(a.stack.containers.filter((c) => a.plan.stop.includes(c.name)));
  const t0 = Date.now();
  const resume = await stopAll(o, users, state);
  const left: Leftovers = {
    deleteLater: [],
    dbVolumes: a.plan.volumes
      .filter((v) => {
        const st = staged.get(v.name)?.stats ?? a.verified[v.name];
        return st?.mariadbDatadir || st?.postgresDatadir;
      })
      .map((v) => v.dockerName),
  };
  const failure = await restoreAll(o, a, db, progress, left, staged, board).then(
    () => undefined,
    (err: unknown) => (o.signal?.aborted ? o.signal.reason : err) as unknown,
  );
  const resumeError = await resume().then(
    () => undefined,
    (e: unknown) => e,
  );
  const downtimeMs = Date.now() - t0;
  if (failure || resumeError) failedMidway(o, a, progress, failure ?? resumeError);
  // While MariaDB and Moodle come up, the old content of plain volumes is deleted (off the stack's downtime).
  const [report] = await Promise.all([
    afterStart(
      o.docker,
      a.stack,
      users.map((c) => c.id),
      left.dbVolumes,
      o.log,
    ),
    deleteOldContent(left.deleteLater, o.log),
  ]);
  await state.clear();
  return { downtimeMs, report };
}

/** What the restore writes, on a terminal: each volume's tarball and blobs, and the dump it loads. */
function applyBoard(a: ApplyInput, db: ManifestDatabase | null): ProgressBoard | undefined {
  if (!ProgressBoard.enabled()) return undefined;
  const totals = manifestTotals(a.selected, { blobs: true });
  if (db) totals[dumpLabel(db.service)] = { bytes: db.rawBytes, estimated: false };
  return new ProgressBoard(totals);
}

/** A restore always stops (never pauses): the files must not be open while they are replaced. */
function stopAll(
  o: RestoreOptions,
  users: ServiceContainer[],
  state: StateStore,
): Promise<() => Promise<void>> {
  return quiesce(
    o.docker,
    {
      actions: users.map((container) => ({ container, action: 'stop' as const })),
      selection: 'volume-mounts',
      warnings: [],
    },
    { stopTimeoutSeconds: o.config.stopTimeoutSeconds, state, log: o.log },
  );
}

async function restoreAll(
  o: RestoreOptions,
  a: ApplyInput,
  db: ManifestDatabase | null,
  progress: RestoreProgress,
  left: Leftovers,
  staged: Map<string, Staged>,
  board: ProgressBoard | undefined,
): Promise<void> {
  for (const v of a.selected) {
    o.signal?.throwIfAborted();
    const rec = await restoreVolume(o, a, v, progress, board, staged.get(v.name));
    if (rec) left.deleteLater.push({ name: v.name, rec });
  }
  if (db) {
    left.dbVolumes.push(
      await restoreDatabase(o.docker, {
        ...o,
        manifest: a.manifest,
        plan: a.plan,
        stack: a.stack,
        db,
        image: a.image,
        spoolDir: a.spoolDir,
        mark: (st) => progress.mark(db.volume.name, st),
        progress: board?.item(dumpLabel(db.service)),
      }),
    );
  }
}

/**
 * The volumes in `a.ahead`, unpacked into their staging directories while the stack still runs: nothing in use
 * is touched (run.ts says which volumes qualify). Two at a time: the database volume's unpack (mostly zstd and
 * tar) overlaps the dataroot's (mostly file-system calls); one after the other they added up (0.5 s + 4 s on
 * the bench's 1 GB set). A failure lets the other finish, then discards every staging copy made.
 */
async function stageAhead(
  o: RestoreOptions,
  a: ApplyInput,
  progress: RestoreProgress,
  board: ProgressBoard | undefined,
): Promise<Map<string, Staged>> {
  const staged = new Map<string, Staged>();
  const record = (name: string) => (rec: SwapRecord | undefined) => progress.swap(name, rec);
  const volumes = a.selected.filter((v) => a.ahead.has(v.name));
  try {
    await inParallel(volumes.length, STAGE_AT_ONCE, async (n) => {
      const v = volumes[n] as ManifestVolume;
      o.signal?.throwIfAborted();
      const t0 = Date.now();
      const io = await volumeIo(o, a, v, board);
      if (!io.dir) return;
      await progress.mark(v.name, 'staging');
      staged.set(
        v.name,
        await stage({
          dir: io.dir,
          extract: io.extract,
          ...(io.beforeSwap ? { beforeSwap: io.beforeSwap } : {}),
          stats: a.verified[v.name],
          record: record(v.name),
        }),
      );
      o.log.info(
        {
          step: 'stage',
          volume: v.name,
          rawBytes: v.rawBytes,
          ms: Date.now() - t0,
          verifiedFirst: v.name in a.verified,
        },
        `unpacked ${v.name} beside its current data (stack still running)`,
      );
    });
  } catch (err) {
    for (const [name, s] of staged) await discardStaged(s, record(name));
    throw err;
  }
  return staged;
}

/** One file volume: staged unpack and swap on the mount path, else empty and extract through the archive API. */
async function restoreVolume(
  o: RestoreOptions,
  a: ApplyInput,
  v: ManifestVolume,
  progress: RestoreProgress,
  board: ProgressBoard | undefined,
  staged: Staged | undefined,
): Promise<SwapRecord | undefined> {
  const { docker, log } = o;
  const { target, dir, extract, beforeSwap } = await volumeIo(o, a, v, board);
  const r = await restoreFileVolume({
    docker,
    volume: target,
    image: a.image,
    dir,
    extract,
    ...(beforeSwap ? { beforeSwap } : {}),
    stats: staged?.stats ?? a.verified[v.name],
    ...(staged ? { staged } : {}),
    progress,
    name: v.name,
    log,
  });
  log.info(
    { step: 'restore', volume: v.name, rawBytes: v.rawBytes, ...r.ms, readPath: dir ? 'mount' : 'docker' },
    `restored ${v.name}`,
  );
  return r.deleteOldLater;
}

/**
 * Where a volume goes (created when missing), its directory if this process can write it, and its extract
 * (its tarball and blobs each with a line on the terminal's board).
 */
async function volumeIo(
  o: RestoreOptions,
  a: ApplyInput,
  v: ManifestVolume,
  board: ProgressBoard | undefined,
): Promise<{
  target: string;
  dir: string | null;
  extract: (into: string | null) => Promise<TarStats | undefined>;
  beforeSwap?: BlobsExtract['beforeSwap'];
}> {
  const { docker, config, backend, log } = o;
  const target = a.plan.volumes.find((x) => x.name === v.name)?.dockerName as string;
  if (await ensureVolume(docker, target, a.plan.project, v.name))
    log.info({ step: 'restore', volume: v.name }, `created volume ${target}`);
  // The volume's directory when this process can write it (BACKUP_READ_PATH): GNU tar instead of putArchive.
  const dir = await volumeDir(docker, target, a.self, config.readPath, 'write');
  const verified = v.name in a.verified;
  // Spooled (remote targets) only when verified: the restore then applies exactly the bytes checked.
  const source = () =>
    a.spoolDir && verified
      ? createReadStream(join(a.spoolDir, v.file))
      : backend.get(`${a.manifest.id}/${v.file}`);
  const tarball = async (to: string | null) =>
    extractInto(
      docker,
      target,
      a.image,
      await source(),
      a.manifest,
      v,
      o.signal,
      config.encryption,
      to,
      board?.volume(v.name),
      verified,
    );
  const set = a.blobs?.sets.get(v.name);
  if (!a.blobs || !set) return { target, dir, extract: tarball };
  const line = board?.item(blobsLabel(v.name));
  return {
    target,
    dir,
    ...withBlobs(tarball, {
      backend,
      store: a.blobs,
      set,
      dirs: a.blobs.dirs.get(v.name),
      dir,
      scratch: config.spoolDir,
      put: (tar) => putVolumeTar(docker, target, a.image, tar),
      volume: v.name,
      log,
      signal: o.signal,
      progress: line && { placed: (bytes) => line.advance(bytes), done: () => line.finish() },
    }),
  };
}

/** Names each volume's state and the command that rolls back; the stack was started again before this. */
function failedMidway(o: RestoreOptions, a: ApplyInput, progress: RestoreProgress, err: unknown): never {
  const states = progress.describe();
  const how = a.safety ? `roll back with \`restore ${a.safety} --yes\`` : 'no safety snapshot was taken';
  o.log.error(
    { step: 'restore', volumes: progress.volumes, safetySnapshot: a.safety, err },
    `restore failed midway (${states}); ${how}`,
  );
  throw new SidecarError(
    'RESTORE_FAILED',
    `restore of ${a.manifest.id} failed: ${(err as Error)?.message}. Volumes: ${states}`,
    how,
    { cause: err },
  );
}
