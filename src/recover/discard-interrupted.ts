import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_NAME, snapshotTime } from '../archive/manifest.js';
import type { Config, S3Target } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { RunState } from '../stack/state.js';
import type { MultipartRecord } from '../storage/backend.js';
import { createBackend } from '../storage/index.js';

/**
 * After a crash: removes what the killed run left at its target and in the spool. A killed backup's archives
 * are invisible anyway (no manifest), but they take space and would be listed as `incomplete` until prune's
 * grace period; a snapshot whose manifest was written before the crash is complete and is kept. The state
 * file does not say which job's target the run wrote to, so every configured target is looked at (run ids
 * are unique, so only that run's objects can match).
 */
export async function discardInterrupted(
  configs: Config[],
  state: RunState | null,
  log: Logger,
): Promise<void> {
  if (!state) return;
  await abortRecordedUploads(configs, state.uploads ?? [], log);
  // Run ids are snapshot ids (backup) or `restore-<snapshot id>`: never a path of their own choosing.
  const id = state.runId;
  if (!snapshotTime(id.replace(/^restore-/, ''))) return;
  const seen = new Set<string>();
  for (const config of configs) {
    await rm(join(config.spoolDir, id), { recursive: true, force: true }).catch(() => undefined);
    const where = JSON.stringify(config.target);
    if (state.operation !== 'backup' || seen.has(where)) continue;
    seen.add(where);
    const backend = createBackend(config.target);
    try {
      if (await backend.stat(`${id}/${MANIFEST_NAME}`)) continue;
      const objects = await backend.list(`${id}/`);
      for (const o of objects) await backend.delete(o.key);
      // A local put that was cut off leaves its hidden temp file, which list() does not show.
      if (config.target.type === 'local')
        await rm(join(config.target.path, id), { recursive: true, force: true });
      if (objects.length > 0)
        log.warn(
          { step: 'recover', snapshot: id, objects: objects.length, target: backend.location },
          `removed the partial snapshot ${id} of the interrupted backup from ${backend.location}`,
        );
    } catch (err) {
      log.warn(
        { step: 'recover', snapshot: id, target: backend.location, err },
        `could not remove the partial snapshot ${id}; it is listed as incomplete until prune sweeps it`,
      );
    } finally {
      await backend.close();
    }
  }
}

/**
 * The multipart uploads the killed run had open (recorded in its state file the moment each started): their
 * parts are invisible, stay stored and cost money until aborted. An upload that is already gone is fine.
 */
async function abortRecordedUploads(
  configs: Config[],
  uploads: MultipartRecord[],
  log: Logger,
): Promise<void> {
  if (uploads.length === 0) return;
  const { S3Backend } = await import('../storage/s3.js');
  for (const u of uploads) {
    const target = configs
      .map((c) => c.target)
      .find(
        (t): t is S3Target => t.type === 's3' && t.bucket === u.bucket && (t.endpoint ?? '') === u.endpoint,
      );
    const where = `s3://${u.bucket}/${u.key}`;
    if (!target) {
      log.warn(
        { step: 'recover', uploadId: u.uploadId, object: where },
        `the interrupted run left multipart upload ${u.uploadId} of ${where} open, and no configured target has that bucket; abort it with your S3 tools or a lifecycle rule`,
      );
      continue;
    }
    const s3 = new S3Backend(target);
    try {
      const note = await s3.abortRecorded(u);
      if (note) log.warn({ step: 'recover', uploadId: u.uploadId, object: where }, note);
      else
        log.warn(
          { step: 'recover', uploadId: u.uploadId, object: where },
          `aborted the multipart upload of ${where} the interrupted run left open`,
        );
    } finally {
      await s3.close();
    }
  }
}
