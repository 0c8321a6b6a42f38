import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import { listSnapshots } from './archive/catalog.js';
import { getCodec } from './archive/codec.js';
import { AGE_EXTENSION, encryptionPlan } from './archive/encryption.js';
import {
  FORMAT,
  MANIFEST_NAME,
  type Manifest,
  type ManifestVolume,
  newSnapshotId,
  serializeManifest,
} from './archive/manifest.js';
import { ByteCounter, HashTap } from './archive/tap.js';
import type { Config } from './config/types.js';
import { discoverStack, type Stack, type VolumeTarget } from './docker/discover.js';
import { collectHooks, runHooks } from './docker/hooks.js';
import { assertLabels } from './docker/label-check.js';
import { planQuiesce, type QuiescePlan } from './docker/plan.js';
import { quiesce } from './docker/quiesce.js';
import { findSelf } from './docker/self.js';
import { StateStore } from './docker/state.js';
import { assertVolume, pickHelperImage, readVolumeTar, withHelper } from './docker/volumes.js';
import { SidecarError, throwFirstCause } from './errors.js';
import { readMoodleFacts } from './moodle/facts.js';
import type { Logger } from './observe/logger.js';
import { Progress } from './observe/progress.js';
import { type Backend, isLocalBackend } from './storage/backend.js';
import type { RetryingBackend } from './storage/retry.js';
import { TOOL } from './version.js';

export interface BackupContext {
  docker: Docker;
  config: Config;
  backend: Backend;
  log: Logger;
  kind?: Manifest['kind'];
  /** Restrict to these short volume names (restore's safety snapshot). */
  volumes?: string[];
  /** Aborts the run (SIGTERM/SIGINT): streams stop, the stack is resumed, nothing is committed. */
  signal?: AbortSignal;
  /** The job this run belongs to, recorded in the manifest (retention applies per job). */
  job?: string;
}

/**
 * The backup pipeline, top to bottom: discover → plan → quiesce → stream each volume → resume →
 * upload spooled archives → commit the manifest. The stack is resumed in a finally block, so every
 * exit path (error, abort) restarts it; a crash is covered by the state file (docker/recover.ts).
 */
export async function runBackup(ctx: BackupContext): Promise<Manifest> {
  const { docker, config, backend, log } = ctx;
  const t0 = Date.now();
  const createdAt = new Date(t0);
  const id = newSnapshotId(createdAt);
  const self = await findSelf(docker);
  const stack = await discoverStack(
    docker,
    { project: config.project, volumes: ctx.volumes ?? config.volumes },
    self,
  );
  if (stack.volumes.length === 0) {
    throw new SidecarError(
      'VOLUME_NOT_FOUND',
      `project ${stack.project} has no named volumes to back up`,
      'set BACKUP_VOLUMES',
    );
  }
  // A bad label would change what is stopped: refuse before anything is touched.
  assertLabels(stack.containers);
  for (const v of stack.volumes) await assertVolume(docker, v.name, v.short);
  const plan = planQuiesce(stack, config);
  for (const w of plan.warnings) log.warn({ step: 'plan' }, w);
  log.info(
    {
      step: 'plan',
      snapshot: id,
      project: stack.project,
      volumes: stack.volumes.map((v) => v.short),
      quiesce: plan.actions.map((a) => `${a.action} ${a.container.name}`),
      selection: plan.selection,
      target: backend.location,
    },
    `backup ${id} of ${stack.project}: ${stack.volumes.length} volume(s)`,
  );
  const helperImage = pickHelperImage(config, self?.image, stack);
  const moodle = await readMoodleFacts(docker, stack);
  const codec = getCodec(config.compression);
  const encryption = await encryptionPlan(config.encryption);
  const spool = useSpool(config, backend);
  const spoolDir = join(config.spoolDir, id);
  const state = new StateStore(config.stateDir);
  await state.write({
    runId: id,
    operation: 'backup',
    startedAt: createdAt.toISOString(),
    pid: process.pid,
    quiesced: [],
  });

  const hooks = collectHooks(stack);
  // Sizes of the previous snapshot give the progress line an ETA (terminal only).
  const expected = Progress.enabled() ? await previousRawSizes(backend) : {};
  const volumes: ManifestVolume[] = [];
  let quiesceMs = 0;
  let readMs = 0;
  let downtimeMs = 0;
  let uploadMs = 0;
  try {
    await runHooks(docker, hooks.pre, log);
    const tq = Date.now();
    const resume = await quiesce(docker, plan, { stopTimeoutSeconds: config.stopTimeoutSeconds, state, log });
    quiesceMs = Date.now() - tq;
    const tr = Date.now();
    try {
      if (spool) await mkdir(spoolDir, { recursive: true, mode: 0o700 });
      for (const v of stack.volumes) {
        ctx.signal?.throwIfAborted();
        const file = `${v.short}${codec.extension}${encryption ? AGE_EXTENSION : ''}`;
        const sink = spool ? spoolSink(join(spoolDir, file)) : backendSink(backend, `${id}/${file}`);
        const r = await streamVolume(
          docker,
          v,
          helperImage,
          encryption
            ? [codec.compress(config.compressionLevel), encryption.stage()]
            : [codec.compress(config.compressionLevel)],
          sink,
          ctx.signal,
          Progress.enabled() ? new Progress(v.short, expected[v.short]) : undefined,
        );
        volumes.push(manifestVolume(v, file, r));
        log.info(
          { step: 'read', volume: v.short, rawBytes: r.rawBytes, storedBytes: r.storedBytes, ms: r.ms },
          `read ${v.short}`,
        );
      }
      readMs = Date.now() - tr;
    } finally {
      await resume();
      downtimeMs = Date.now() - tq;
      log.info({ step: 'resumed', downtimeMs }, `stack resumed after ${(downtimeMs / 1000).toFixed(1)} s`);
    }
    if (spool) {
      const tu = Date.now();
      for (const v of volumes) {
        ctx.signal?.throwIfAborted();
        await putFile(backend, `${id}/${v.file}`, join(spoolDir, v.file), v.storedBytes);
        await rm(join(spoolDir, v.file), { force: true });
      }
      uploadMs = Date.now() - tu;
      log.info({ step: 'upload', ms: uploadMs, target: backend.location }, 'uploaded spooled archives');
    }
    const manifest: Manifest = {
      format: FORMAT,
      id,
      kind: ctx.kind ?? 'manual',
      status: 'ok',
      createdAt: createdAt.toISOString(),
      completedAt: new Date().toISOString(),
      tool: TOOL,
      project: stack.project,
      ...(ctx.job ? { job: ctx.job } : {}),
      mode: plan.actions.some((a) => a.action === 'pause') ? 'pause' : 'stop',
      codec: codec.name,
      encryption: encryption?.manifest ?? null,
      volumes,
      stack: { services: describeServices(stack, plan), moodle },
      timings: { quiesceMs, readMs, downtimeMs, uploadMs, totalMs: Date.now() - t0 },
    };
    // The commit point: a snapshot exists once its manifest does.
    await backend.put(`${id}/${MANIFEST_NAME}`, Readable.from([serializeManifest(manifest)]));
    log.info(
      {
        step: 'commit',
        snapshot: id,
        totalMs: manifest.timings.totalMs,
        downtimeMs,
        storedBytes: sum(volumes, 'storedBytes'),
      },
      `snapshot ${id} committed`,
    );
    return manifest;
  } catch (err) {
    await discardPartial(backend, id, log);
    // An abort surfaces from the streams as a bare AbortError: report why the run stopped.
    throw ctx.signal?.aborted ? ctx.signal.reason : err;
  } finally {
    // Post hooks undo what pre hooks did (e.g. maintenance mode), so they run after failures too.
    await runHooks(docker, hooks.post, log).catch((e: unknown) =>
      log.error({ step: 'hook', err: e }, 'post hook failed'),
    );
    await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
    await state.clear();
  }
}

type Sink = (compressed: PassThrough) => Promise<void>;

function spoolSink(path: string): Sink {
  return (s) => pipeline(s, createWriteStream(path, { mode: 0o600 }));
}

function backendSink(backend: Backend, key: string): Sink {
  return async (s) => {
    await backend.put(key, s);
  };
}

interface StreamResult {
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  ms: number;
}

/** Docker tar → byte counter → codec → [age] → sha256 tap → sink, with back-pressure end to end. */
async function streamVolume(
  docker: Docker,
  v: VolumeTarget,
  image: string,
  /** The codec, then the encryption stage when encrypting: the tap hashes what is stored. */
  encode: NodeJS.ReadWriteStream[],
  sink: Sink,
  signal?: AbortSignal,
  progress?: Progress,
): Promise<StreamResult> {
  const t0 = Date.now();
  return withHelper(docker, { volume: v.name, image, readOnly: true }, async (helper) => {
    const tar = await readVolumeTar(helper);
    const raw = new ByteCounter();
    const tap = new HashTap();
    const out = new PassThrough();
    const stages: NodeJS.ReadWriteStream[] = [raw];
    if (progress) stages.push(progress);
    const produce = pipeline([tar, ...stages, ...encode, tap, out], signal ? { signal } : {});
    const consume = sink(out).catch((err: unknown) => {
      out.destroy(err as Error);
      throw err;
    });
    throwFirstCause(await Promise.allSettled([produce, consume]));
    return { rawBytes: raw.bytes, storedBytes: tap.bytes, sha256: tap.digest(), ms: Date.now() - t0 };
  });
}

function manifestVolume(v: VolumeTarget, file: string, r: StreamResult): ManifestVolume {
  return {
    name: v.short,
    dockerName: v.name,
    file,
    rawBytes: r.rawBytes,
    storedBytes: r.storedBytes,
    sha256: r.sha256,
    mountedAt: v.mountedBy.map((m) => ({ service: m.service, destination: m.destination })),
    excluded: [],
  };
}

/**
 * Spool when the target is remote: then the upload happens after the stack is back up. A local target is
 * written directly (it is disk already); `always`/`never` override.
 */
function useSpool(config: Config, backend: Backend): boolean {
  if (config.spool === 'always') return true;
  if (config.spool === 'never') return false;
  return !isLocalBackend(backend);
}

function describeServices(stack: Stack, plan: QuiescePlan): Manifest['stack']['services'] {
  return stack.containers.map((c) => ({
    service: c.service,
    container: c.name,
    image: c.image,
    imageId: c.imageId,
    action: plan.actions.find((a) => a.container.id === c.id)?.action ?? 'none',
  }));
}

/** Removes what a failed run stored; without a manifest it is invisible anyway, this only frees space. */
async function discardPartial(backend: Backend, id: string, log: Logger): Promise<void> {
  try {
    for (const o of await backend.list(`${id}/`)) await backend.delete(o.key);
  } catch (err) {
    log.warn(
      { step: 'cleanup', snapshot: id, err },
      "could not remove the failed run's partial objects; prune sweeps them",
    );
  }
}

function sum(vs: ManifestVolume[], k: 'storedBytes' | 'rawBytes'): number {
  return vs.reduce((a, v) => a + v[k], 0);
}

async function previousRawSizes(backend: Backend): Promise<Record<string, number>> {
  try {
    const last = (await listSnapshots(backend)).find((e) => e.status === 'ok');
    return Object.fromEntries((last?.manifest?.volumes ?? []).map((v) => [v.name, v.rawBytes]));
  } catch {
    return {};
  }
}

/** Uploads a spooled file; a retrying backend re-reads the file on each try (a one-shot stream cannot be). */
async function putFile(backend: Backend, key: string, path: string, size: number): Promise<void> {
  const open = () => createReadStream(path);
  const retrying = backend as Backend & { putFrom?: RetryingBackend['putFrom'] };
  if (retrying.putFrom) await retrying.putFrom(key, open, { contentLength: size });
  else await backend.put(key, open(), { contentLength: size });
}
