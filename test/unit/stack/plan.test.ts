import { describe, expect, it } from 'vitest';
import { isSidecarError } from '../../../src/common/errors.js';
import type { SelfInfo } from '../../../src/docker/self.js';
import type { ServiceContainer, Stack, VolumeTarget } from '../../../src/stack/discover.js';
import { selectVolumes } from '../../../src/stack/discover.js';
import { planQuiesce, stopOrder } from '../../../src/stack/plan.js';
import { container } from '../../harness/containers.js';

function stackOf(containers: ServiceContainer[]): Stack {
  const volumes: VolumeTarget[] = containers.flatMap((c) =>
    c.mounts.map((m) => ({
      name: m.volume,
      short: m.volume.replace(/^p_/, ''),
      mountedBy: [{ container: c.name, service: c.service, destination: m.destination }],
    })),
  );
  return { project: 'p', containers, volumes, allVolumes: volumes };
}

describe('stop order', () => {
  it('stops dependents first: moodle before mariadb, a chain in reverse', () => {
    const cs = [
      container('mariadb'),
      container('moodle', { dependsOn: ['mariadb', 'redis'] }),
      container('redis'),
      container('cron', { dependsOn: ['moodle'] }),
    ];
    expect(stopOrder(cs).map((c) => c.service)).toEqual(['cron', 'moodle', 'redis', 'mariadb']);
  });

  it('reports a dependency cycle and still orders every container once', () => {
    const warnings: string[] = [];
    const order = stopOrder(
      [container('a', { dependsOn: ['b'] }), container('b', { dependsOn: ['a'] })],
      warnings,
    );
    expect(order.map((c) => c.service).sort()).toEqual(['a', 'b']);
    expect(warnings.join()).toContain('dependency cycle');
  });
});

describe('which containers are quiesced', () => {
  const base = () => [
    container('mariadb'),
    container('moodle', { dependsOn: ['mariadb'] }),
    container('web', { mounts: [] }),
  ];

  it('without stop labels: every running container that mounts a selected volume', () => {
    const plan = planQuiesce(stackOf(base()), { mode: 'stop', stopLabel: 'true' });
    expect(plan.selection).toBe('volume-mounts');
    expect(plan.actions.map((a) => `${a.action} ${a.container.service}`)).toEqual([
      'stop moodle',
      'stop mariadb',
    ]);
  });

  it("with offen's label or ours: exactly the labelled ones, per-container mode, pause warns", () => {
    const cs = base();
    (cs[0] as ServiceContainer).labels = {
      'docker-volume-backup.stop-during-backup': 'true',
      'moodle-backup.mode': 'pause',
    };
    (cs[2] as ServiceContainer).labels = { 'moodle-backup.stop': 'true' };
    const plan = planQuiesce(stackOf(cs), { mode: 'stop', stopLabel: 'true' });
    expect(plan.selection).toBe('labels');
    // Unrelated containers: reverse name order (deterministic).
    expect(plan.actions.map((a) => `${a.action} ${a.container.service}`)).toEqual([
      'stop web',
      'pause mariadb',
    ]);
    expect(plan.warnings.join()).toContain('crash-consistent');
  });

  it('the stop label value must match BACKUP_STOP_DURING_BACKUP_LABEL; stop=false excludes; stopped containers are left alone', () => {
    const cs = base();
    (cs[0] as ServiceContainer).labels = { 'docker-volume-backup.stop-during-backup': 'nightly' };
    (cs[1] as ServiceContainer).labels = { 'moodle-backup.stop': 'false' };
    expect(
      planQuiesce(stackOf(cs), { mode: 'stop', stopLabel: 'nightly' }).actions.map(
        (a) => a.container.service,
      ),
    ).toEqual(['mariadb']);
    const exited = base().map((c) => ({ ...c, state: 'exited' }));
    expect(planQuiesce(stackOf(exited), { mode: 'stop', stopLabel: 'true' }).actions).toEqual([]);
  });
});

describe('volume selection', () => {
  const all: VolumeTarget[] = ['mariadb_data', 'moodle_data', 'moodledata_data', 'backup_state'].map((s) => ({
    name: `p_${s}`,
    short: s,
    mountedBy: [],
  }));
  const self = (mounts: SelfInfo['volumeMounts']): SelfInfo => ({
    id: 'self',
    image: 'img',
    labels: {},
    volumeMounts: mounts,
  });

  it('default: every project volume except those the sidecar itself mounts', () => {
    const own = new Set(['p_backup_state']);
    expect(
      selectVolumes(
        all,
        [],
        self([{ name: 'p_backup_state', destination: '/var/lib/moodle-backup' }]),
        own,
      ).map((v) => v.short),
    ).toEqual(['mariadb_data', 'moodle_data', 'moodledata_data']);
  });

  it('BACKUP_VOLUMES by short or full name; an unknown one is an error naming it', () => {
    expect(
      selectVolumes(all, ['moodledata_data', 'p_mariadb_data'], null, new Set()).map((v) => v.name),
    ).toEqual(['p_moodledata_data', 'p_mariadb_data']);
    try {
      selectVolumes(all, ['nope_data'], null, new Set());
      expect.unreachable();
    } catch (err) {
      expect(isSidecarError(err, 'VOLUME_NOT_FOUND')).toBe(true);
      expect((err as Error).message).toContain('nope_data');
    }
  });

  it("offen's convention: volumes mounted into the sidecar under /backup/<name> select those volumes", () => {
    const s = self([
      { name: 'p_moodledata_data', destination: '/backup/moodledata' },
      { name: 'p_mariadb_data', destination: '/backup/db/' },
      { name: 'p_backup_state', destination: '/var/lib/moodle-backup' },
    ]);
    expect(
      selectVolumes(all, [], s, new Set(['p_moodledata_data', 'p_mariadb_data', 'p_backup_state'])).map(
        (v) => [v.name, v.short],
      ),
    ).toEqual([
      ['p_moodledata_data', 'moodledata'],
      ['p_mariadb_data', 'db'],
    ]);
  });
});
