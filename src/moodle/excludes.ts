import { posix } from 'node:path';
import { type ExcludeRule, invalidExcludeRules } from '../config/exclude-rules.js';
import type { Config } from '../config/types.js';
import { LABELS } from '../docker/labels.js';
import type { Stack, VolumeTarget } from '../stack/discover.js';

/**
 * What Moodle rebuilds by itself (caches, temp files, sessions, locks, the cron log) and the maintenance flag
 * of the running backup. Directories keep their (empty) entry so a restore recreates them with their owner.
 */
export const MOODLE_DATAROOT_EXCLUDES: readonly ExcludeRule[] = [
  'cache/',
  'localcache/',
  'temp/',
  'sessions/',
  'lock/',
  'moodle-cron.log',
  'climaintenance.html',
];

export interface VolumeExcludes {
  rules: ExcludeRule[];
  source: 'config' | 'label' | 'moodle-default' | 'none';
}

/** The dataroot's volume, and the dataroot's path inside it ('' = the volume's top). */
export type DatarootVolume = { name: string; subpath: string } | string | null;

/** The Moodle defaults for a dataroot `subpath` deep in its volume. */
export function datarootRules(subpath: string): ExcludeRule[] {
  const prefix = subpath.replace(/^\/+|\/+$/g, '');
  return MOODLE_DATAROOT_EXCLUDES.map((r) => (prefix ? `${prefix}/${r}` : r));
}

/**
 * Exclusions per Docker volume name. Precedence: the job's `exclude` setting for that volume, then the
 * `moodle-backup.exclude` label of the containers that mount it, then the Moodle defaults for the dataroot.
 */
export function resolveExcludes(
  stack: Pick<Stack, 'containers' | 'volumes'>,
  dataroot: DatarootVolume,
  config: Pick<Config, 'exclude'>,
): { byVolume: Map<string, VolumeExcludes>; warnings: string[] } {
  const datarootVolume = typeof dataroot === 'string' ? { name: dataroot, subpath: '' } : dataroot;
  const warnings: string[] = [];
  const fromLabels = new Map<string, ExcludeRule[]>();
  for (const c of stack.containers) {
    const raw = c.labels[LABELS.exclude];
    if (raw === undefined) continue;
    const paths = raw
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    if (paths.length === 0 || (paths.length === 1 && paths[0] === 'none')) {
      for (const m of c.mounts) fromLabels.set(m.volume, fromLabels.get(m.volume) ?? []);
      continue;
    }
    for (const p of paths) {
      const mount = c.mounts
        .filter((m) => p.startsWith(`${m.destination.replace(/\/$/, '')}/`))
        .sort((a, b) => b.destination.length - a.destination.length)[0];
      const rule = mount ? p.slice(mount.destination.replace(/\/$/, '').length + 1) : '';
      const bad = mount ? invalidExcludeRules([rule]) : [];
      if (!mount || !posix.isAbsolute(p) || bad.length > 0) {
        warnings.push(
          `${c.name}: ignoring "${p}" in ${LABELS.exclude}: ${bad[0] ?? 'expected an absolute path below one of its volume mounts'}`,
        );
        continue;
      }
      fromLabels.set(mount.volume, [...(fromLabels.get(mount.volume) ?? []), rule]);
    }
  }
  const byVolume = new Map<string, VolumeExcludes>();
  for (const v of stack.volumes) byVolume.set(v.name, pick(v, fromLabels, datarootVolume, config));
  return { byVolume, warnings };
}

function pick(
  v: VolumeTarget,
  fromLabels: Map<string, ExcludeRule[]>,
  datarootVolume: { name: string; subpath: string } | null,
  config: Pick<Config, 'exclude'>,
): VolumeExcludes {
  const configured = config.exclude?.[v.short] ?? config.exclude?.[v.name];
  if (configured) return { rules: [...configured], source: 'config' };
  const labelled = fromLabels.get(v.name);
  if (labelled) return { rules: [...new Set(labelled)], source: 'label' };
  if (v.name === datarootVolume?.name)
    return { rules: datarootRules(datarootVolume.subpath), source: 'moodle-default' };
  return { rules: [], source: 'none' };
}
