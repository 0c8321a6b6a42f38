import { loadavg } from 'node:os';

export interface Row {
  dataset: string;
  /** Stable key, e.g. `baseline:tar|zstd` or `product:backup-local-zstd`. */
  key: string;
  label: string;
  kind: 'baseline' | 'product';
  bytes: number;
  ms: number;
  mbps: number;
  /** Output size / input size, where the row compresses. */
  ratio?: number;
  /** CPU seconds of the pipeline's processes (baseline: the shell's children; sidecar: node + zstd). */
  cpuS?: number;
  /** CPU seconds the Docker daemon spent meanwhile (getArchive/putArchive and helper containers). */
  dockerdCpuS?: number;
  /** Stack downtime measured from Docker events. */
  downtimeMs?: number;
  /** The pipeline's own read+compress (backup) or extract (restore) time. */
  pipelineMs?: number;
  peakRssMb?: number;
  /**
   * Peak resident memory of the pipeline's other processes (tar, zstd, a shell): the highest sum of the
   * `VmHWM` of those alive together, sampled from /proc; which ones, in `childRss`.
   */
  childRssMb?: number;
  /** The children's peaks by command name, e.g. "zstd 41, tar 3" (MB). */
  childRss?: string;
  /** Restore only: time verifying the archives, emptying the volumes, and extracting (putArchive). */
  verifyMs?: number;
  emptyMs?: number;
  extractMs?: number;
  note?: string;
  /** 1-minute load average right after the row was measured (2 cores: above 2 means others ran too). */
  load1: number;
  /** The sidecar's log steps with their times, for finding where the time goes. */
  steps?: string[];
}

export interface Target {
  name: string;
  value: number;
  /** `>=` or `<=` goal for `value`. */
  goal: number;
  op: '>=' | '<=' | '>' | '<';
  met: boolean;
  detail: string;
}

const MB = 1024 * 1024;

/** A row, with the machine's 1-minute load average when it was measured (the machine is shared). */
export function row(r: Omit<Row, 'mbps' | 'load1'>): Row {
  return { ...r, mbps: round(r.bytes / MB / (r.ms / 1000), 1), load1: round(loadavg()[0] ?? 0, 1) };
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function target(name: string, value: number, op: Target['op'], goal: number, detail: string): Target {
  // Four digits: the stored-bytes targets are fractions of a per cent.
  const v = round(value, Math.abs(value) < 0.1 ? 4 : 2);
  const met = { '>=': v >= goal, '<=': v <= goal, '>': v > goal, '<': v < goal }[op];
  return { name, value: v, op, goal, met, detail };
}

/** A target whose rows this run left out (BENCH_ONLY) is neither met nor missed. */
function verdict(x: Target): string {
  if (Number.isNaN(x.value)) return 'not measured';
  return x.met ? 'met ' : 'MISS';
}

function pad(cells: string[][]): string {
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length))) ?? [];
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')).join('\n');
}

const s = (ms?: number) => (ms === undefined ? '' : (ms / 1000).toFixed(2));

/** The table printed at the end of a run (and pasted into the README's performance section). */
export function formatTable(rows: Row[], targets: Target[]): string {
  const head = [
    'dataset',
    'pipeline',
    'MB',
    's',
    'MB/s',
    'out/in',
    'cpu s',
    'dockerd cpu s',
    'downtime s',
    'pipeline s',
    'RSS MB',
    'children RSS MB',
    'load',
  ];
  const body = rows.map((r) => [
    r.dataset,
    r.label,
    (r.bytes / MB).toFixed(0),
    s(r.ms),
    r.mbps.toFixed(1),
    r.ratio === undefined ? '' : r.ratio.toFixed(3),
    r.cpuS === undefined ? '' : r.cpuS.toFixed(1),
    r.dockerdCpuS === undefined ? '' : r.dockerdCpuS.toFixed(1),
    s(r.downtimeMs),
    s(r.pipelineMs),
    r.peakRssMb === undefined ? '' : String(r.peakRssMb),
    r.childRssMb === undefined ? '' : String(r.childRssMb),
    r.load1.toFixed(1),
  ]);
  const t = targets.map((x) => [verdict(x), x.name, `${x.value} ${x.op} ${x.goal}`, x.detail]);
  return `${pad([head, ...body])}\n\ntargets:\n${pad(t)}`;
}

const cpu = (r: Row) =>
  r.cpuS === undefined ? '' : `${r.cpuS.toFixed(1)}${r.dockerdCpuS ? ` (+${r.dockerdCpuS.toFixed(1)})` : ''}`;

const children = (r: Row) =>
  r.childRssMb === undefined ? '' : `${r.childRssMb}${r.childRss ? ` (${r.childRss})` : ''}`;

/** Markdown table cell: pipes in pipeline names would split the cell. */
const md = (text: string) => text.replace(/\|/g, '\\|');

/** The same table as Markdown, for the README. */
export function formatMarkdown(rows: Row[], targets: Target[]): string {
  const lines = [
    '| dataset | pipeline | MB | s | MB/s | out/in | CPU s (+dockerd) | downtime s | peak RSS MB | children peak RSS MB | load |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.dataset} | ${md(r.label)} | ${(r.bytes / MB).toFixed(0)} | ${s(r.ms)} | ${r.mbps.toFixed(1)} | ${
          r.ratio === undefined ? '' : r.ratio.toFixed(3)
        } | ${cpu(r)} | ${s(r.downtimeMs)} | ${r.peakRssMb ?? ''} | ${children(r)} | ${r.load1.toFixed(1)} |`,
    ),
    '',
    '| target | measured | goal | |',
    '|---|--:|--:|---|',
    ...targets.map((x) => `| ${md(x.name)} | ${x.value} | ${x.op} ${x.goal} | ${verdict(x).trim()} |`),
  ];
  return lines.join('\n');
}
