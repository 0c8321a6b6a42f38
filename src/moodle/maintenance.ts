import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { isSidecarError, SidecarError } from '../common/errors.js';
import { execCapture } from '../docker/exec.js';
import type { Logger } from '../observe/logger.js';
import type { MaintenanceRecord, StateStore } from '../stack/state.js';
import { STACK_LABEL, SWARM_SERVICE_NAME } from '../stack/swarm.js';
import { EXTRA_PATH, type MoodleSite } from './site.js';

/** The flag file Moodle's CLI maintenance mode writes into the dataroot. */
export const MAINTENANCE_FLAG = 'climaintenance.html';

/**
 * How long turning maintenance mode off is retried: Moodle's CLI connects to the database first, and after a
 * stop-mode run (or a restore) the restarted database takes a moment to accept connections.
 */
const OFF_RETRY_MS = 30_000;
const OFF_RETRY_EVERY_MS = 1_000;

/**
 * Runs maintenance.php with `--enable` / `--disable`. The dataroot's own mtime is put back afterwards, so the
 * flag leaves no trace in the snapshot or on the site (only the file itself comes and goes).
 */
const SWITCH = `${EXTRA_PATH}
script="$1"; dataroot="$2"; action="$3"
t=""; [ -n "$dataroot" ] && t=$(stat -c %Y "$dataroot" 2>/dev/null)
php "$script" "$action"; rc=$?
[ -n "$t" ] && touch -c -m -d "@$t" "$dataroot" 2>/dev/null
exit $rc`;

async function runSwitch(
  docker: Docker,
  rec: MaintenanceRecord,
  action: '--enable' | '--disable',
): Promise<void> {
  const r = await execCapture(
    docker,
    rec.container,
    ['sh', '-c', SWITCH, 'maintenance', rec.script, rec.dataroot, action],
    60_000,
    rec.user,
  ).catch((err: unknown) => ({ exitCode: -1, stdout: '', stderr: (err as Error).message }));
  if (r.exitCode !== 0) {
    const what = action === '--enable' ? 'turn on' : 'turn off';
    throw new SidecarError(
      'MAINTENANCE_FAILED',
      `could not ${what} maintenance mode in ${rec.name} (exit ${r.exitCode}): ${`${r.stderr}${r.stdout}`.trim().slice(-300)}`,
      action === '--enable'
        ? 'check that php and admin/cli/maintenance.php work in the Moodle container; nothing was stopped'
        : `run \`php ${rec.script} --disable\` in ${rec.name}; the next sidecar start retries it`,
    );
  }
}

/** Turns maintenance mode off for a record left in the state file by a run that died. */
export async function disableMaintenance(docker: Docker, rec: MaintenanceRecord): Promise<void> {
  try {
    await runSwitch(docker, rec, '--disable');
  } catch (err) {
    // The container may have been recreated meanwhile (`docker compose up -d`): the flag lives in the dataroot
    // volume, so its successor would come up in maintenance mode. Switch it off there instead.
    const successor = await successorOf(docker, rec);
    if (!successor) throw err;
    await runSwitch(
      docker,
      { ...rec, container: successor.Id, name: successor.Names[0]?.replace(/^\//, '') ?? successor.Id },
      '--disable',
    );
  }
}

/**
 * disableMaintenance, retried for up to OFF_RETRY_MS while the Moodle container runs (its CLI needs the
 * database, which may still be starting). A container that is gone or not running fails at once.
 */
export async function disableWhenUp(docker: Docker, rec: MaintenanceRecord, log: Logger): Promise<void> {
  const end = Date.now() + OFF_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await disableMaintenance(docker, rec);
    } catch (err) {
      const running =
        (await docker
          .getContainer(rec.container)
          .inspect()
          .then((i) => i.State.Running && !i.State.Restarting)
          .catch(() => false)) ||
        (rec.swarmService !== undefined && (await successorOf(docker, rec)) !== undefined);
      if (!running || Date.now() + OFF_RETRY_EVERY_MS > end) throw err;
      // Expected after every stop-mode run; only the last failure is worth more than a debug line.
      if (attempt === 1)
        log.debug(
          { step: 'maintenance', container: rec.name },
          `maintenance mode not off yet (${(err as Error).message.slice(0, 120)}); retrying for up to ${OFF_RETRY_MS / 1000} s`,
        );
      await sleep(OFF_RETRY_EVERY_MS);
    }
  }
}

/** A running container of the same compose project and service (or swarm service), other than the recorded one. */
async function successorOf(
  docker: Docker,
  rec: MaintenanceRecord,
): Promise<Docker.ContainerInfo | undefined> {
  if (!rec.project || !rec.service) return undefined;
  // A swarm task's successor is any running task of its service (scaling back replaces them all).
  const label = rec.swarmService
    ? [`${SWARM_SERVICE_NAME}=${rec.swarmService}`]
    : [`com.docker.compose.project=${rec.project}`, `com.docker.compose.service=${rec.service}`];
  const list = await docker.listContainers({ filters: { label, status: ['running'] } });
  return list.find((c) => c.Id !== rec.container);
}

/**
 * Moodle's maintenance mode for one run: `on()` records the switch in the state file *before* flipping it, so
 * a crash at any point leaves enough for the next start (recover/run.ts) to turn it off; `off()` is
 * idempotent and runs in every exit path. A site that was already in maintenance mode is left as it was.
 */
export class Maintenance {
  private rec: MaintenanceRecord | null = null;

  constructor(
    private readonly docker: Docker,
    private readonly site: MoodleSite | null,
    private readonly state: StateStore,
    private readonly log: Logger,
  ) {}

  get active(): boolean {
    return this.rec !== null;
  }

  /** The site was in maintenance mode before the run, and is left so. */
  get alreadyOn(): boolean {
    return this.wasOn;
  }

  private wasOn = false;

  async on(): Promise<void> {
    const site = this.site;
    // Not found: planMoodle has warned, naming what was checked.
    if (!site) return;
    const rec: MaintenanceRecord = {
      container: site.container.id,
      name: site.container.name,
      script: `${site.codeDir}/admin/cli/maintenance.php`,
      dataroot: site.dataroot?.path ?? '',
      ...(site.user ? { user: site.user } : {}),
      project: site.container.labels['com.docker.compose.project'] ?? site.container.labels[STACK_LABEL],
      service: site.container.labels['com.docker.compose.service'] ?? site.container.service,
      ...(site.container.swarm ? { swarmService: site.container.swarm.name } : {}),
    };
    if (rec.dataroot) {
      const flag = await execCapture(this.docker, rec.container, [
        'test',
        '-e',
        `${rec.dataroot}/${MAINTENANCE_FLAG}`,
      ]);
      if (flag.exitCode === 0) {
        this.wasOn = true;
        this.log.warn(
          { step: 'maintenance', container: rec.name },
          'the site is already in maintenance mode: left on, and left on after the backup',
        );
        return;
      }
    }
    await this.state.update((s) => {
      s.maintenance = rec;
    });
    this.rec = rec;
    const t0 = Date.now();
    await runSwitch(this.docker, rec, '--enable');
    this.log.info({ step: 'maintenance', container: rec.name, ms: Date.now() - t0 }, 'maintenance mode on');
  }

  /** on() for restore's safety snapshot: a failure is returned, not thrown, and leaves nothing to undo. */
  async tryOn(): Promise<SidecarError | null> {
    try {
      await this.on();
      return null;
    } catch (err) {
      if (!isSidecarError(err, 'MAINTENANCE_FAILED')) throw err;
      await this.forget();
      return err;
    }
  }

  private async forget(): Promise<void> {
    this.rec = null;
    await this.state.update((s) => {
      delete s.maintenance;
    });
  }

  /**
   * Retried (bounded) while the Moodle container runs, since its CLI needs the database up. With `warnOnly`
   * (restore's safety snapshot: the restore replaces the dataroot, flag included) a last failure is a warning.
   */
  async off(opts: { warnOnly?: boolean } = {}): Promise<void> {
    const rec = this.rec;
    if (!rec) return;
    const t0 = Date.now();
    try {
      await disableWhenUp(this.docker, rec, this.log);
    } catch (err) {
      if (!opts.warnOnly) throw err;
      this.log.warn(
        { step: 'maintenance', container: rec.name, err },
        `${(err as Error).message}; the restore goes on (a restored dataroot comes without the flag)`,
      );
      await this.forget();
      return;
    }
    await this.forget();
    this.log.info({ step: 'maintenance', container: rec.name, ms: Date.now() - t0 }, 'maintenance mode off');
  }
}
