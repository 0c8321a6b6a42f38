import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSidecarError } from '../../../src/common/errors.js';
import { loadConfig } from '../../../src/config/load.js';
import { MOODLE_DATAROOT_EXCLUDES, resolveExcludes } from '../../../src/moodle/excludes.js';
import type { ServiceContainer, VolumeTarget } from '../../../src/stack/discover.js';

function container(
  name: string,
  labels: Record<string, string>,
  mounts: [string, string][],
): ServiceContainer {
  return {
    id: name,
    name,
    service: name,
    image: 'x',
    imageId: 'x',
    state: 'running',
    labels,
    dependsOn: [],
    mounts: mounts.map(([volume, destination]) => ({ volume, destination })),
  };
}

const VOLUMES: VolumeTarget[] = ['p_moodledata', 'p_moodle', 'p_db'].map((name) => ({
  name,
  short: name.slice(2),
  mountedBy: [],
}));

const MOODLE_MOUNTS: [string, string][] = [
  ['p_moodledata', '/bitnami/moodledata'],
  ['p_moodle', '/bitnami/moodle'],
];

describe('which paths are excluded per volume', () => {
  it('Moodle defaults apply to the dataroot only', () => {
    const stack = { volumes: VOLUMES, containers: [container('moodle', {}, MOODLE_MOUNTS)] };
    const { byVolume, warnings } = resolveExcludes(stack, 'p_moodledata', {});
    expect(byVolume.get('p_moodledata')).toEqual({
      rules: [...MOODLE_DATAROOT_EXCLUDES],
      source: 'moodle-default',
    });
    expect(byVolume.get('p_moodle')).toEqual({ rules: [], source: 'none' });
    expect(byVolume.get('p_db')).toEqual({ rules: [], source: 'none' });
    expect(warnings).toEqual([]);
  });

  it('a label with absolute container paths replaces the defaults for the volumes it names; bad paths are reported', () => {
    const labels = {
      'moodle-backup.exclude':
        '/bitnami/moodledata/cache/, /bitnami/moodledata/filedir/*/tmp,/etc/passwd,/bitnami/moodle/../x',
    };
    const stack = { volumes: VOLUMES, containers: [container('moodle', labels, MOODLE_MOUNTS)] };
    const { byVolume, warnings } = resolveExcludes(stack, 'p_moodledata', {});
    expect(byVolume.get('p_moodledata')).toEqual({ rules: ['cache/', 'filedir/*/tmp'], source: 'label' });
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('/etc/passwd');
    expect(warnings[1]).toContain('not a plain relative path');
  });

  it('an empty label value turns the defaults off; the job setting wins over labels and defaults', () => {
    const stack = {
      volumes: VOLUMES,
      containers: [container('moodle', { 'moodle-backup.exclude': '' }, MOODLE_MOUNTS)],
    };
    expect(resolveExcludes(stack, 'p_moodledata', {}).byVolume.get('p_moodledata')).toEqual({
      rules: [],
      source: 'label',
    });
    const configured = resolveExcludes(stack, 'p_moodledata', {
      exclude: { moodledata: ['temp/'], p_moodle: ['README.txt'] },
    }).byVolume;
    expect(configured.get('p_moodledata')).toEqual({ rules: ['temp/'], source: 'config' });
    expect(configured.get('p_moodle')).toEqual({ rules: ['README.txt'], source: 'config' });
  });
});

describe('configuration of mode and excludes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbst-excl-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const load = async (yaml: string, env: NodeJS.ProcessEnv = {}) => {
    const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yml`);
    await writeFile(file, yaml);
    return loadConfig({ ...env, BACKUP_CONFIG: file });
  };

  it('accepts mode online (file or BACKUP_MODE) and per-volume exclude lists', async () => {
    const c = await load('mode: stop\nexclude:\n  moodledata_data: [cache/, temp/]\n', {
      BACKUP_MODE: 'online',
    });
    expect(c.mode).toBe('online');
    expect(c.exclude).toEqual({ moodledata_data: ['cache/', 'temp/'] });
  });

  it('refuses a rule that would drop the whole volume, naming it', async () => {
    const err = await load('exclude:\n  moodledata_data: ["/"]\n').catch((e: unknown) => e);
    expect(isSidecarError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain('exclude.moodledata_data');
    expect((err as Error).message).toContain('would exclude the whole volume');
  });
});
