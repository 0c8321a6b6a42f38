import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { execCapture } from '../docker/exec.js';
import type { Logger } from '../observe/logger.js';
import type { Stack } from '../stack/discover.js';
import { liveTask } from '../stack/swarm.js';

export interface StartReport {
  /** Containers where MariaDB answered a ping after the restore. */
  databaseReady: string[];
  /** Result of Moodle's `admin/cli/upgrade.php --is-pending`, when a Moodle CLI was found. */
  upgrade: 'none-pending' | 'pending' | 'unknown' | 'not-found';
  upgradeDetail?: string;
}

/**
 * After a restore: wait until MariaDB accepts connections (found by its admin tool in the container, not by
 * image name), then ask Moodle whether restored code and database disagree (exit 2 = upgrade pending).
 */
export async function afterStart(
  docker: Docker,
  stack: Stack,
  started: string[],
  dbVolumes: string[],
  log: Logger,
): Promise<StartReport> {
  const report: StartReport = { databaseReady: [], upgrade: 'not-found' };
  // The database is the container that mounts a restored MariaDB datadir: no guessing by image name.
  const dbContainers = stack.containers.filter(
    (x) => started.includes(x.id) && x.mounts.some((m) => dbVolumes.includes(m.volume)),
  );
  for (const c of dbContainers) {
    // A swarm service scaled back runs in new task containers.
    const id = await liveTask(docker, c);
    const end = Date.now() + 120_000;
    for (;;) {
      const r = await execCapture(docker, id, [
        'sh',
        '-c',
        'PATH="$PATH:/opt/bitnami/mariadb/bin"; $(command -v mariadb-admin || command -v mysqladmin) ping --silent',
      ]).catch(() => null);
      // "Access denied" also proves the server is up; only a failed connection means not yet.
      if (r && (r.exitCode === 0 || /denied/i.test(r.stdout + r.stderr))) {
        report.databaseReady.push(c.name);
        log.info({ step: 'check', container: c.name }, `MariaDB in ${c.name} accepts connections`);
        break;
      }
      if (Date.now() > end) {
        log.error(
          { step: 'check', container: c.name },
          `MariaDB in ${c.name} did not accept connections within 120 s`,
        );
        break;
      }
      await sleep(500);
    }
  }
  for (const c of stack.containers.filter((x) => started.includes(x.id))) {
    const id = await liveTask(docker, c);
    for (const m of c.mounts) {
      const script = `${m.destination}/admin/cli/upgrade.php`;
      const has = await execCapture(docker, id, ['test', '-f', script]).catch(() => null);
      if (has?.exitCode !== 0) continue;
      const r = await execCapture(docker, id, ['php', script, '--is-pending']).catch(() => null);
      report.upgrade = r?.exitCode === 0 ? 'none-pending' : r?.exitCode === 2 ? 'pending' : 'unknown';
      report.upgradeDetail = `${r?.stdout ?? ''}${r?.stderr ?? ''}`.trim().slice(0, 300);
      const msg =
        report.upgrade === 'pending'
          ? 'Moodle reports an upgrade is pending: the restored database is older than the running code (run admin/cli/upgrade.php)'
          : report.upgrade === 'none-pending'
            ? 'Moodle code and database versions agree'
            : `could not tell whether a Moodle upgrade is pending (${report.upgradeDetail})`;
      log[report.upgrade === 'none-pending' ? 'info' : 'warn']({ step: 'check', container: c.name }, msg);
      return report;
    }
  }
  return report;
}
