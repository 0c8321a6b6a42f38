import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../../src/archive/manifest.js';
import { BackupMetrics } from '../../../src/observe/metrics.js';

interface Target {
  expr: string;
  legendFormat?: string;
}
interface Dashboard {
  panels: { title: string; targets: Target[] }[];
  templating: { list: { definition: string }[] };
}

/** Labels Prometheus adds to every scraped series; the sidecar does not export them itself. */
const SCRAPE_LABELS = ['instance'];

/** Series names in a PromQL expression: identifiers that are not functions, labels, ranges or strings. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"[^"]*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/[a-zA-Z_:][\w:]*(?!\s*\(|[\w:])/g)].map((m) => m[0]);
}

/** Labels an expression or legend relies on: `by (…)` groupings and `{{label}}` in the legend. */
function usedLabels(t: Target): string[] {
  const by = [...t.expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) => (m[1] ?? '').split(/\s*,\s*/));
  const legend = [...(t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1] ?? '');
  return [...by, ...legend].filter((l) => l !== '');
}

/** What the sidecar's /metrics serves after one success and one failure of a named job. */
async function exported(): Promise<Map<string, Set<string>>> {
  const metrics = new BackupMetrics();
  const manifest = {
    id: '20270101T000000Z-abcd',
    job: 'files',
    completedAt: '2027-01-01T00:00:05Z',
    timings: { quiesceMs: 1, readMs: 2, downtimeMs: 3, uploadMs: 4, totalMs: 5 },
    volumes: [{ name: 'moodledata_data', rawBytes: 10, storedBytes: 5 }],
    database: null,
  } as unknown as Manifest;
  metrics.recordSuccess(manifest);
  metrics.recordFailure(new Error('x'), 'files');
  const labels = new Map<string, Set<string>>();
  for (const line of (await metrics.render()).split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type?.[1]) labels.set(type[1], labels.get(type[1]) ?? new Set());
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? /.exec(line);
    if (!sample?.[1] || line.startsWith('#')) continue;
    const set = labels.get(sample[1]) ?? new Set<string>();
    for (const m of (sample[2] ?? '').matchAll(/(\w+)="/g)) set.add(m[1] ?? '');
    labels.set(sample[1], set);
  }
  return labels;
}

describe('docs/grafana-dashboard.json', async () => {
  const dashboard = JSON.parse(
    await readFile(new URL('../../../docs/grafana-dashboard.json', import.meta.url), 'utf8'),
  ) as Dashboard;
  const targets = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, ...t })));

  it('has panels for job age, duration, downtime, stored bytes per volume and failures', () => {
    const all = targets.map((t) => t.expr).join('\n');
    for (const m of [
      'moodle_backup_job_last_success_timestamp_seconds',
      'moodle_backup_last_duration_seconds',
      'moodle_backup_last_downtime_seconds',
      'moodle_backup_volume_stored_bytes',
      'moodle_backup_job_failures_total',
    ])
      expect(all).toContain(m);
  });

  it('queries only metrics the sidecar exports, by labels those metrics have', async () => {
    const served = await exported();
    expect(served.size).toBeGreaterThan(5);
    const queries = [
      ...targets,
      ...dashboard.templating.list.map((v) => ({ panel: 'variable', expr: v.definition })),
    ];
    for (const t of queries) {
      const names = metricNames(t.expr.replace(/^label_values\((\w+),.*\)$/, '$1'));
      expect(names.length, `${t.panel}: ${t.expr}`).toBeGreaterThan(0);
      for (const name of names) {
        expect([...served.keys()], `${t.panel}: ${t.expr}`).toContain(name);
        if (!('legendFormat' in t)) continue;
        const have = [...(served.get(name) ?? []), ...SCRAPE_LABELS];
        for (const l of usedLabels(t as Target)) expect(have, `${t.panel}: label ${l}`).toContain(l);
      }
    }
  });

  it('the name extraction finds series and skips functions, labels and ranges', () => {
    expect(metricNames('sum by (job) (increase(a_total{x="y"}[1h])) / on (job) b')).toEqual(['a_total', 'b']);
    expect(metricNames('time() - c_seconds')).toEqual(['c_seconds']);
  });
});
