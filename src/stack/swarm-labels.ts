import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';

/** Label namespaces whose keys change what a run does: ours and offen/docker-volume-backup's. */
const OURS = ['moodle-backup.', 'docker-volume-backup.'];

/**
 * A swarm task's labels as the planner reads them: the container's own (`labels:` in the stack file) and its
 * service's (`deploy.labels`, where offen documents them). The same setting in both places is ambiguous:
 * refused, naming the service, the key and the fix.
 */
export function swarmLabels(info: Docker.ContainerInfo, service: Docker.Service): Record<string, string> {
  const own = service.Spec?.Labels ?? {};
  const container = info.Labels ?? {};
  const both = Object.keys(own).filter(
    (k) => OURS.some((p) => k.startsWith(p)) && Object.hasOwn(container, k),
  );
  if (both.length > 0) {
    const name = service.Spec?.Name ?? service.ID;
    throw new SidecarError(
      'LABEL_INVALID',
      `service ${name}: ${both.map((k) => `label ${k}`).join(', ')} is set both on the service (deploy.labels) and on its containers (labels)`,
      `keep it in one place, preferably under deploy.labels of ${name}, and redeploy the stack (docker stack deploy); nothing was stopped`,
    );
  }
  return { ...container, ...own };
}
