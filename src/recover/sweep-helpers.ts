import type Docker from 'dockerode';
import { isSelf, ownerLiveness, parseOwnerLabel } from '../common/owner.js';
import { dockerStatus } from '../docker/client.js';
import { HELPER_LABEL } from '../docker/labels.js';
import type { Logger } from '../observe/logger.js';

/**
 * True when a helper label's value (see labels.ts helperOwner; old `host:pid` labels are still read, by the
 * PID alone) names a process of this host (the sidecar container's hostname, or the machine's for a CLI run
 * on it) that no longer runs. Helpers of another host are left alone: whether their process lives cannot be
 * told from here. We ourselves count as dead: this is only called before the process has made helpers of its
 * own (at the start of a command, or of a run under the run lock), and an old label's PID may be ours again
 * after a container restart.
 */
export function ownerIsDead(owner: string | undefined): boolean {
  const o = parseOwnerLabel(owner);
  if (!o) return false;
  const liveness = ownerLiveness(o);
  return liveness !== 'foreign' && (isSelf(o) || liveness === 'dead');
}

/**
 * Removes the helper containers and scratch volumes (e.g. a `verify --deep` drill's `moodle-backup-drill-*`
 * server and volume) of processes that died before their `finally` ran. A drill writes no state file, so this
 * runs on every start and run whether or not one exists. Live runs' helpers are never touched.
 */
export async function sweepDeadHelpers(docker: Docker, log: Logger): Promise<void> {
  const containers = (await docker.listContainers({ all: true, filters: { label: [HELPER_LABEL] } })).filter(
    (c) => ownerIsDead(c.Labels[HELPER_LABEL]),
  );
  let removed = 0;
  for (const c of containers) {
    // v: the container's anonymous volumes go with it; the named scratch volume is freed for the step below.
    await docker
      .getContainer(c.Id)
      .remove({ force: true, v: true })
      .then(
        () => removed++,
        (err: unknown) => {
          if (dockerStatus(err) !== 404)
            log.warn({ step: 'recover', container: c.Names[0], err }, 'could not remove a leftover helper');
        },
      );
  }
  const { Volumes } = await docker.listVolumes({ filters: { label: [HELPER_LABEL] } });
  const volumes = (Volumes ?? []).filter((v) => ownerIsDead(v.Labels?.[HELPER_LABEL]));
  for (const v of volumes) {
    await docker
      .getVolume(v.Name)
      .remove({ force: true })
      .then(
        () => removed++,
        (err: unknown) => {
          if (dockerStatus(err) !== 404)
            log.warn({ step: 'recover', volume: v.Name, err }, 'could not remove a leftover scratch volume');
        },
      );
  }
  if (removed > 0) {
    log.warn(
      {
        step: 'recover',
        containers: containers.map((c) => c.Names[0]?.replace(/^\//, '')),
        volumes: volumes.map((v) => v.Name),
      },
      `removed ${removed} helper container(s) and scratch volume(s) left by a process that died`,
    );
  }
}
