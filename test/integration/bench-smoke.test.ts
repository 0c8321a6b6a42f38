import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TempDirs, tempDirs } from '../harness/config.js';
import { docker, IMAGES } from '../harness/docker.js';
import { buildSidecarImage, SIDECAR_IMAGE } from '../harness/sidecar-image.js';

const BENCH = fileURLToPath(new URL('../../dist/bench/run.js', import.meta.url));

interface BenchResult {
  runId: string;
  rows: {
    dataset: string;
    key: string;
    bytes: number;
    ms: number;
    mbps: number;
    peakRssMb?: number;
    childRssMb?: number;
    childRss?: string;
  }[];
  targets: { name: string; value: number; met: boolean }[];
  checks: string[];
  markdown: string;
}

/** What `npm run bench` must report for every data set (the table). */
const EXPECTED: Record<string, string[]> = {
  mix: [
    'baseline:tar|zstd',
    'product:backup-local-zstd',
    'baseline:tar -czf',
    'baseline:tar|gzip',
    'baseline:tar|pigz',
    'baseline:tar|node-zlib-gzip',
    'baseline:docker stop+start',
    'product:backup-local-gzip',
    'product:backup-s3-zstd',
    'product:backup-local-zstd-excludes',
    'product:backup-local-zstd-docker-path',
    'baseline:zstd -d|tar -x',
    'product:restore-local-zstd-docker-path',
    'product:restore-local-zstd',
  ],
  small: [
    'baseline:tar|zstd',
    'product:backup-local-zstd',
    'baseline:zstd -d|tar -x',
    'product:restore-local-zstd',
  ],
  big: ['baseline:tar|zstd', 'product:backup-local-zstd', 'product:restore-local-zstd'],
  // The incremental group's CI piece (BENCH_INC_SETS=smoke): a 1st and a 2nd run of a small dataroot.
  'inc-smoke': ['product:inc-1st', 'product:inc-2nd'],
  // The user's view: the image in a Compose-like stack through `docker exec`, against host tar | zstd.
  user: [
    'baseline:user tar|zstd',
    'product:user backup',
    'baseline:user zstd -d|tar -x',
    'product:user restore',
  ],
};

describe('npm run bench, smoke run at tiny sizes (figures are not checked, only that every row is there)', () => {
  let dirs: TempDirs;
  let code: number | null;
  let stdout = '';
  let stderr = '';

  beforeAll(
    async () => {
      // The user-view rows run the image built from this checkout (cached by a hash of its inputs).
      const built = await buildSidecarImage();
      expect(built.code, built.output.slice(-3000)).toBe(0);
      dirs = await tempDirs('bench');
      await new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, [BENCH], {
          env: {
            ...process.env,
            BENCH_MIX_MB: '24',
            BENCH_SMALL_FILES: '400',
            BENCH_BIG_MB: '24',
            BENCH_REPEAT: '1',
            BENCH_INC_SETS: 'smoke',
            BENCH_INC_MB: '60',
            BENCH_INC_FILES: '300',
            BENCH_INC_DB_MB: '4',
            BENCH_IMAGE: IMAGES.base,
            BENCH_SIDECAR_IMAGE: SIDECAR_IMAGE,
            BENCH_OUT_DIR: dirs.root,
            BENCH_WORK_DIR: join(dirs.root, 'work'),
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
        });
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
        child.on('error', reject);
        child.on('close', (c) => {
          clearTimeout(timer);
          code = c;
          resolve();
        });
      });
    },
    15 * 60_000 + 260_000,
  );
  afterAll(async () => {
    await dirs?.remove();
  });

  it('exits 0, prints the table and writes one JSON result with every row and target', async () => {
    expect(code, stderr.slice(-3000)).toBe(0);
    expect(stdout).toContain('targets:');
    const files = (await readdir(dirs.root)).filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(1);
    const result = JSON.parse(await readFile(join(dirs.root, files[0] as string), 'utf8')) as BenchResult;
    for (const [dataset, keys] of Object.entries(EXPECTED)) {
      const got = result.rows.filter((r) => r.dataset === dataset).map((r) => r.key);
      expect(got.sort(), dataset).toEqual([...keys].sort());
    }
    for (const r of result.rows) {
      expect(r.bytes, r.key).toBeGreaterThan(0);
      expect(Number.isFinite(r.mbps) && r.mbps > 0, `${r.dataset} ${r.key} MB/s`).toBe(true);
      if (r.key.startsWith('product:')) expect(r.peakRssMb, r.key).toBeGreaterThan(0);
    }
    // The children's memory, beside node's: every compressing pipeline has a zstd (or gzip) process.
    for (const key of ['baseline:tar|zstd', 'product:backup-local-zstd', 'product:restore-local-zstd']) {
      const r = result.rows.find((x) => x.dataset === 'mix' && x.key === key);
      expect(r?.childRssMb, key).toBeGreaterThan(0);
      expect(r?.childRss, key).toMatch(/zstd \d+/);
    }
    for (const key of ['product:user backup', 'product:user restore', 'baseline:user tar|zstd']) {
      const r = result.rows.find((x) => x.dataset === 'user' && x.key === key);
      expect(r?.childRssMb, key).toBeGreaterThan(0);
      expect(r?.childRss, key).toMatch(/zstd \d+/);
    }
    expect(result.targets.map((t) => t.name)).toHaveLength(14);
    for (const t of result.targets) expect(Number.isFinite(t.value), t.name).toBe(true);
    // Nothing changed between the two runs: the 2nd stores no pack and at most 0.1% of the dataroot.
    const second = result.targets.find((t) => t.name === 'inc-smoke: 2nd run new bytes / dataroot');
    expect(second?.met, JSON.stringify(second)).toBe(true);
    expect(result.checks).toEqual([
      'mix: restored bytes equal the original',
      'small: restored bytes equal the original',
      'big: restored bytes equal the original',
      'user: restored bytes (round 1) equal the original',
    ]);
    expect(result.markdown).toContain('| dataset | pipeline |');
  });

  it('leaves no container or volume of its run behind', async () => {
    const result = JSON.parse(
      await readFile(
        join(dirs.root, (await readdir(dirs.root)).find((f) => f.endsWith('.json')) as string),
        'utf8',
      ),
    ) as BenchResult;
    const d = docker();
    const containers = await d.listContainers({ all: true });
    const { Volumes } = await d.listVolumes();
    expect(containers.filter((c) => (c.Names[0] ?? '').includes(result.runId))).toEqual([]);
    expect((Volumes ?? []).filter((v) => v.Name.includes(result.runId))).toEqual([]);
  });
});
