import type { IncDataset } from './inc-datasets.js';
import { datarootNewBytes, median, type Sample } from './inc-runs.js';
import { type Row, round, row, type Target, target } from './report.js';

/** What each interleaved step's row is called in the table. */
const LABELS: Record<string, [Row['kind'], string]> = {
  'tar|zstd': ['baseline', 'tar | zstd -T0 -3'],
  full: ['product', 'sidecar full backup (incremental off)'],
  'inc-1st': ['product', 'sidecar incremental, 1st run'],
  'restic-1st': ['baseline', 'restic backup, 1st run'],
  'borg-1st': ['baseline', 'borg create, 1st run'],
  'rsync-1st': ['baseline', 'rsync -a, 1st run'],
  'inc-2nd': ['product', 'sidecar incremental, 2nd run (nothing changed)'],
  'restic-2nd': ['baseline', 'restic backup, 2nd run'],
  'borg-2nd': ['baseline', 'borg create, 2nd run'],
  'rsync-2nd': ['baseline', 'rsync -a --link-dest, 2nd run'],
  'inc-1pct': ['product', 'sidecar incremental, 1% new files'],
  'restore-full': ['product', 'sidecar restore into empty volumes'],
  'zstd -d|tar -x': ['baseline', 'zstd -d | tar -x'],
  'restore-1pct': ['product', 'sidecar restore, dataroot lacks 1%'],
  'down-small-2nd': ['product', 'sidecar incremental 2nd run, small dataroot (downtime)'],
  'down-big-2nd': ['product', 'sidecar incremental 2nd run, big dataroot (downtime)'],
};

const med = (xs: Sample[] | undefined, f: (s: Sample) => number | undefined) =>
  median((xs ?? []).map((s) => f(s) ?? Number.NaN));

/** One row per step: medians over the rounds, the spread in the note. */
export function incRows(set: IncDataset, samples: Map<string, Sample[]>): Row[] {
  return [...samples].map(([key, xs]) => {
    const [kind, label] = LABELS[key] ?? ['product', key];
    const ms = xs.map((s) => s.ms);
    const stored = key.startsWith('inc-') ? med(xs, (s) => datarootNewBytes(s.manifest)) : Number.NaN;
    const rss = xs.map((s) => s.peakRssMb ?? 0);
    return row({
      dataset: set.ds.name,
      key: `${kind}:${key}`,
      label,
      kind,
      bytes: set.ds.bytes,
      ms: median(ms),
      cpuS: round(
        med(xs, (s) => s.cpuS),
        2,
      ),
      ratio: Number.isFinite(stored) ? round(stored / set.datarootBytes, 5) : undefined,
      downtimeMs: kind === 'product' ? med(xs, (s) => s.downtimeMs) : undefined,
      peakRssMb: kind === 'product' ? Math.max(...rss) : undefined,
      note: `median of ${xs.length} (${(Math.min(...ms) / 1000).toFixed(2)}–${(Math.max(...ms) / 1000).toFixed(2)} s)`,
      steps: xs.at(-1)?.steps,
    });
  });
}

/** The targets for one data set (main: the 1 GB set; many: the 200,000-file variant). */
export function secondRunBytes(set: IncDataset, samples: Map<string, Sample[]>): Target {
  const bytes = med(samples.get('inc-2nd'), (s) => datarootNewBytes(s.manifest));
  return target(
    `${set.ds.name}: 2nd run new bytes / dataroot`,
    bytes / set.datarootBytes,
    '<=',
    0.001,
    `${(bytes / 1e3).toFixed(0)} kB: dataroot tarball + blob list + packs`,
  );
}

export function incTargets(
  set: IncDataset,
  samples: Map<string, Sample[]>,
  datarootCompressed: number,
  secondGoal: number,
): Target[] {
  const n = set.ds.name;
  const m = (k: string) => med(samples.get(k), (s) => s.ms);
  const second = m('inc-2nd');
  const t: Target[] = [
    target(
      `${n}: 2nd run new bytes / dataroot`,
      med(samples.get('inc-2nd'), (s) => datarootNewBytes(s.manifest)) / set.datarootBytes,
      '<=',
      0.001,
      'dataroot tarball + blob list + packs',
    ),
    target(
      `${n}: 2nd run time / 1st run time`,
      second / m('inc-1st'),
      '<=',
      secondGoal,
      'incremental 1st vs 2nd',
    ),
  ];
  for (const tool of ['restic', 'borg', 'rsync'])
    t.push(
      target(
        `${n}: ${tool} 2nd run time / sidecar 2nd run time`,
        m(`${tool}-2nd`) / second,
        '>',
        1,
        'sidecar faster',
      ),
    );
  t.push(
    target(
      `${n}: 1% new: stored / dataroot compressed`,
      med(samples.get('inc-1pct'), (s) => datarootNewBytes(s.manifest)) / datarootCompressed,
      '<=',
      0.015,
      `compressed ${(datarootCompressed / 1e6).toFixed(0)} MB`,
    ),
    target(
      `${n}: 1% new: time / full backup time`,
      m('inc-1pct') / m('full'),
      '<=',
      0.1,
      'full = incremental off',
    ),
    target(
      `${n}: restore, 1% missing / full restore`,
      m('restore-1pct') / m('restore-full'),
      '<=',
      0.1,
      'whole CLI runs',
    ),
    target(
      `${n}: full restore speed / zstd -d|tar -x`,
      m('zstd -d|tar -x') / m('restore-full'),
      '>=',
      0.8,
      'empty volumes',
    ),
    target(`${n}: 1st run speed / tar|zstd -T0 -3`, m('tar|zstd') / m('inc-1st'), '>=', 0.8, 'same volumes'),
    target(`${n}: 1st run speed / restic 1st run`, m('restic-1st') / m('inc-1st'), '>=', 2, 'same volumes'),
    target(`${n}: peak RSS, every sidecar run (MB)`, peakRss(samples), '<=', 150, 'VmHWM'),
  );
  return t;
}

export function peakRss(samples: Map<string, Sample[]>): number {
  return Math.max(...[...samples.values()].flat().map((s) => s.peakRssMb ?? 0));
}

export function downtimeTarget(samples: Map<string, Sample[]>, bigMb: number, smallMb: number): Target {
  const d = (k: string) => med(samples.get(k), (s) => s.downtimeMs);
  return target(
    `stop-mode downtime, ${(bigMb / 1024).toFixed(1)} GB / ${(smallMb / 1024).toFixed(1)} GB dataroot`,
    d('down-big-2nd') / d('down-small-2nd'),
    '<=',
    1.2,
    `${(d('down-big-2nd') / 1000).toFixed(2)} s / ${(d('down-small-2nd') / 1000).toFixed(2)} s, 2nd runs`,
  );
}
