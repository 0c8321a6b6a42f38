import type Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { isSidecarError } from '../../../src/common/errors.js';
import type { ServiceContainer, Stack } from '../../../src/stack/discover.js';
import { planQuiesce } from '../../../src/stack/plan.js';
import { swarmLabels } from '../../../src/stack/swarm-labels.js';
import { keepsRunning } from '../../../src/stack/swarm-quiesce.js';
import { container } from '../../harness/containers.js';

/** A task container of a swarm service: `replicas` null for a global service. */
function task(
  service: string,
  replicas: number | null,
  opts: Partial<ServiceContainer> = {},
): ServiceContainer {
  return container(service, {
    swarm: { id: `svc-${service}`, name: `p_${service}`, replicas },
    mounts: [{ volume: 'p_moodledata_data', destination: '/data' }],
    ...opts,
  });
}

function stackOf(containers: ServiceContainer[]): Stack {
  const v = { name: 'p_moodledata_data', short: 'moodledata_data', mountedBy: [] };
  return { project: 'p', kind: 'swarm', containers, volumes: [v], allVolumes: [v] };
}

const config = { mode: 'stop' as const, stopLabel: 'true' };

describe('swarm planning', () => {
  it('plans a stop (executed as a scale to 0) for each task of a replicated service, Moodle before MariaDB', () => {
    const plan = planQuiesce(
      stackOf([
        task('mariadb', 1),
        task('moodle', 2, { id: 'a', name: 'p_moodle.1.x', dependsOn: ['mariadb'] }),
        task('moodle', 2, { id: 'b', name: 'p_moodle.2.y', dependsOn: ['mariadb'] }),
      ]),
      config,
    );
    expect(plan.actions.map((a) => `${a.action} ${a.container.swarm?.name}`)).toEqual([
      'stop p_moodle',
      'stop p_moodle',
      'stop p_mariadb',
    ]);
  });

  it('refuses a global service that would be stopped, naming the settings that fix it', () => {
    let err: unknown;
    try {
      planQuiesce(stackOf([task('moodle', 2), task('cron', null)]), config);
    } catch (e) {
      err = e;
    }
    expect(isSidecarError(err, 'SWARM_UNSUPPORTED')).toBe(true);
    expect((err as Error).message).toContain('global service p_cron cannot be stopped');
    expect((err as { hint: string }).hint).toContain('deploy: {mode: replicated, replicas: 1}');
    expect((err as { hint: string }).hint).toContain('moodle-backup.stop=false');
  });

  it('pauses a global service labelled for it, and leaves one labelled stop=false running', () => {
    const paused = planQuiesce(
      stackOf([task('cron', null, { labels: { 'moodle-backup.mode': 'pause' } })]),
      config,
    );
    expect(paused.actions.map((a) => a.action)).toEqual(['pause']);
    const kept = task('cron', null, { labels: { 'moodle-backup.stop': 'false' } });
    expect(planQuiesce(stackOf([kept]), config).actions).toEqual([]);
    expect(keepsRunning(kept)).toBe(true);
    expect(keepsRunning(task('moodle', 2, { labels: { 'moodle-backup.stop': 'false' } }))).toBe(false);
  });
});

describe('swarm labels', () => {
  const info = (labels: Record<string, string>) => ({ Labels: labels }) as unknown as Docker.ContainerInfo;
  const service = (labels: Record<string, string>) =>
    ({ ID: 's1', Spec: { Name: 'p_moodle', Labels: labels } }) as unknown as Docker.Service;

  it('merges deploy.labels (the service) with the container labels', () => {
    expect(
      swarmLabels(
        info({ 'com.docker.stack.namespace': 'p', 'moodle-backup.pre': 'echo hi' }),
        service({ 'com.docker.stack.namespace': 'p', 'docker-volume-backup.stop-during-backup': 'true' }),
      ),
    ).toEqual({
      'com.docker.stack.namespace': 'p',
      'moodle-backup.pre': 'echo hi',
      'docker-volume-backup.stop-during-backup': 'true',
    });
  });

  it('refuses the same setting on the service and on its containers', () => {
    let err: unknown;
    try {
      swarmLabels(info({ 'moodle-backup.stop': 'true' }), service({ 'moodle-backup.stop': 'true' }));
    } catch (e) {
      err = e;
    }
    expect(isSidecarError(err, 'LABEL_INVALID')).toBe(true);
    expect((err as Error).message).toContain('service p_moodle: label moodle-backup.stop is set both');
  });
});
