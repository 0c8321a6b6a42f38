import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { execCapture } from '../docker/exec.js';
import type { Logger } from '../observe/logger.js';
import type { Stack } from '../stack/discover.js';
import { liveTask } from '../stack/swarm.js';
import { EXTRA_PATH, findSite } from './site.js';

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
        // pg_isready where the container has it (PostgreSQL), else MariaDB's admin tool.
        'PATH="$PATH:/opt/bitnami/mariadb/bin:/opt/bitnami/postgresql/bin:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1)"; if command -v pg_isready >/dev/null; then exec pg_isready -q; fi; $(command -v mariadb-admin || command -v mysqladmin) ping --silent',
      ]).catch(() => null);
      // "Access denied" also proves the server is up; only a failed connection means not yet.
      if (r && (r.exitCode === 0 || /denied/i.test(r.stdout + r.stderr))) {
        report.databaseReady.push(c.name);
        log.info({ step: 'check', container: c.name }, `the database in ${c.name} accepts connections`);
        break;
      }
      if (Date.now() > end) {
        log.error(
          { step: 'check', container: c.name },
          `the database in ${c.name} did not accept connections within 120 s`,
        );
        break;
      }
      await sleep(500);
    }
  }
  // Found as a backup finds it (mounts, usual paths, Moodle 5.1's public/), run as the web server's user.
  // A swarm service scaled back runs in new task containers: ask the live ones.
  const startedNow = await Promise.all(
    stack.containers
      .filter((x) => started.includes(x.id))
      .map(async (x) => ({ ...x, id: await liveTask(docker, x), state: 'running' })),
  );
  const site = (await findSite(docker, { ...stack, containers: startedNow }).catch(() => null))?.moodle;
  if (!site) return report;
  const script = `${site.codeDir}/admin/cli/upgrade.php`;
  const r = await execCapture(
    docker,
    site.container.id,
    ['sh', '-c', `${EXTRA_PATH}; exec php "$1" --is-pending`, 'upgrade', script],
    60_000,
    site.user,
  ).catch(() => null);
  report.upgrade = r?.exitCode === 0 ? 'none-pending' : r?.exitCode === 2 ? 'pending' : 'unknown';
  report.upgradeDetail = `${r?.stdout ?? ''}${r?.stderr ?? ''}`.trim().slice(0, 300);
  const msg =
    report.upgrade === 'pending'
      ? `Moodle reports an upgrade is pending: the restored database is older than the running code (run ${script})`
      : report.upgrade === 'none-pending'
        ? 'Moodle code and database versions agree'
        : `could not tell whether a Moodle upgrade is pending (${report.upgradeDetail})`;
  log[report.upgrade === 'none-pending' ? 'info' : 'warn'](
    { step: 'check', container: site.container.name },
    msg,
  );
  return report;
}
