import { describe, expect, it } from 'vitest';
import { stopPlan } from '../../../src/backup/stop-instead.js';
import type { ServiceContainer, Stack } from '../../../src/stack/discover.js';
import { container } from '../../harness/containers.js';

function stackOf(containers: ServiceContainer[], selected: string[]): Stack {
  const volumes = selected.map((name) => ({ name, short: name.replace(/^p_/, ''), mountedBy: [] }));
  return { project: 'p', containers, volumes, allVolumes: volumes };
}

describe("restore's safety snapshot of a broken site: who is stopped instead of maintenance mode", () => {
  it('every user of a selected volume, crash-looping ones too, dependents first; labels and pause ignored', () => {
    const cs = [
      container('mariadb', { labels: { 'moodle-backup.mode': 'pause' } }),
      container('moodle', { state: 'restarting', dependsOn: ['mariadb'] }),
      container('cron', { state: 'exited', mounts: [{ volume: 'p_moodle_data', destination: '/c' }] }),
      container('redis', { labels: { 'docker-volume-backup.stop-during-backup': 'true' } }),
    ];
    const plan = stopPlan(stackOf(cs, ['p_mariadb_data', 'p_moodle_data']));
    expect(plan.actions.map((a) => `${a.action} ${a.container.service}`)).toEqual([
      'stop moodle',
      'stop mariadb',
    ]);
  });
});
