import type Docker from 'dockerode';
import type { VolumeTotal } from '../observe/progress.js';
import type { MoodlePlan } from './moodle-plan.js';

/**
 * The dump's expected raw size: the previous snapshot's dump, else what the server says its application
 * databases hold. Both are estimates ("~"); asked before maintenance mode goes on, so it adds nothing to
 * the time the site is closed. Any error only costs the display its total.
 */
export async function dumpTotal(
  docker: Docker,
  dump: NonNullable<MoodlePlan['dump']>,
  previous: number | undefined,
): Promise<VolumeTotal> {
  if (previous !== undefined) return { bytes: previous, estimated: true };
  const { engine, container } = dump.db;
  try {
    const databases = await engine.listDatabases(docker, container.id);
    const bytes = await engine.dataBytes(docker, container.id, databases);
    return bytes > 0 ? { bytes, estimated: true } : { estimated: true };
  } catch {
    return { estimated: true };
  }
}
