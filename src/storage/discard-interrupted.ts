import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_NAME, snapshotTime } from '../archive/manifest.js';
import type { Config } from '../config/types.js';
import type { RunState } from '../docker/state.js';
import type { Logger } from '../observe/logger.js';
import { createBackend } from './index.js';

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
