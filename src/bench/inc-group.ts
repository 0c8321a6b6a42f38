import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { createIncDataset, type IncDataset, type IncSizes, incSizesFromEnv } from './inc-datasets.js';
import { measureDowntime, measureS3, type S3Figures } from './inc-extra.js';
import { type MemoryFigure, measureIndexMemory } from './inc-memory.js';
import { downtimeTarget, incRows, incTargets, peakRss, secondRunBytes } from './inc-report.js';
import { measureIncremental, measureSmoke } from './incremental.js';
import { type E2eFigure, measureMemoryE2e } from './memory-e2e.js';
import type { Row, Target } from './report.js';
import { target } from './report.js';
import type { BenchEnv } from './scenarios.js';
import { removeBenchResources } from './stack.js';

/** `BENCH_ONLY=incremental` (or part of a full run): issue 17's figures, rows, targets and checks. */
export interface IncGroupResult {
  sizes: IncSizes;
  datasets: { name: string; files: number; bytes: number; datarootBytes: number }[];
  rows: Row[];
  targets: Target[];
  checks: string[];
  s3: S3Figures[];
  memory: MemoryFigure[];
  /** The real CLI's peak RSS per command at BENCH_INC_E2E_BLOBS blobs. */
  memoryE2e: E2eFigure[];
}

interface GroupCtx {
  docker: Docker;
  runId: string;
  image: string;
  env: BenchEnv;
  log: (m: string) => void;
}

async function dataset(
  g: GroupCtx,
  name: string,
  mb: number,
  files: number,
  dbMb: number,
): Promise<IncDataset> {
  g.log(`${name}: generating ${mb} MB in ${files} blobs + ${dbMb} MB database`);
  const d = await createIncDataset(g.docker, g.runId, g.image, name, mb, files, dbMb);
  g.log(`${name}: ${d.ds.files} files, ${(d.ds.bytes / 1048576).toFixed(0)} MB`);
  return d;
}

async function blobSet(g: GroupCtx, r: IncGroupResult, which: 'main' | 'many'): Promise<void> {
  const { sizes } = r;
  const name = which === 'main' ? 'inc-1g' : 'inc-many';
  const [mb, files] = which === 'main' ? [sizes.mainMb, sizes.mainFiles] : [sizes.manyMb, sizes.manyFiles];
  const d = await dataset(g, name, mb, files, sizes.dbMb);
  r.datasets.push({ name, files: d.ds.files, bytes: d.ds.bytes, datarootBytes: d.datarootBytes });
  const dir = join(g.env.work, name);
  const res = await measureIncremental({ env: g.env, inc: d, dir, repeat: sizes.repeat, log: g.log });
  r.rows.push(...incRows(d, res.samples));
  r.targets.push(...incTargets(d, res.samples, res.datarootCompressed, which === 'main' ? 0.25 : 0.05));
  r.checks.push(...res.checks);
  if (which === 'main' && sizes.sets.includes('s3')) {
    g.log(`${name}: S3 requests`);
    r.s3 = await measureS3(g.env, d, g.log);
    for (const s of r.s3)
      r.targets.push(
        target(
          `${name}: peak RSS, S3 ${s.run}${s.run.startsWith('restore') ? '' : ' run'}, frames ${s.frames}${s.age ? ', age' : ''} (MB)`,
          s.peakRssMb,
          '<=',
          150,
          s.run.startsWith('restore')
            ? `${s.total} requests, ${(s.downloaded / 1e6).toFixed(1)} MB downloaded`
            : `${s.total} requests, ${s.perGb.toFixed(0)} per GB stored`,
        ),
      );
  }
  await rm(dir, { recursive: true, force: true });
  await removeBenchResources(g.docker, g.runId);
}

async function downtimeSets(g: GroupCtx, r: IncGroupResult): Promise<void> {
  const { sizes } = r;
  const files = (mb: number) => Math.max(100, Math.round((mb / sizes.mainMb) * sizes.mainFiles));
  const small = await dataset(g, 'inc-down-small', sizes.downSmallMb, files(sizes.downSmallMb), sizes.dbMb);
  const big = await dataset(g, 'inc-down-big', sizes.downBigMb, files(sizes.downBigMb), sizes.dbMb);
  const dir = join(g.env.work, 'inc-down');
  const samples = await measureDowntime(g.env, { small, big }, dir, sizes.repeat, g.log);
  r.rows.push(...incRows(small, new Map([['down-small-2nd', samples.get('down-small-2nd') ?? []]])));
  r.rows.push(...incRows(big, new Map([['down-big-2nd', samples.get('down-big-2nd') ?? []]])));
  r.targets.push(downtimeTarget(samples, sizes.downBigMb, sizes.downSmallMb));
  r.targets.push(target('downtime sets: peak RSS (MB)', peakRss(samples), '<=', 150, 'VmHWM'));
  await rm(dir, { recursive: true, force: true });
  await removeBenchResources(g.docker, g.runId);
}

/** CI's piece: a 2nd run with nothing changed stores ≤ 0.1% of the dataroot. */
async function smokeSet(g: GroupCtx, r: IncGroupResult): Promise<void> {
  const d = await dataset(g, 'inc-smoke', r.sizes.mainMb, r.sizes.mainFiles, r.sizes.dbMb);
  r.datasets.push({ name: d.ds.name, files: d.ds.files, bytes: d.ds.bytes, datarootBytes: d.datarootBytes });
  const dir = join(g.env.work, d.ds.name);
  const samples = await measureSmoke({ env: g.env, inc: d, dir, repeat: 1, log: g.log });
  r.rows.push(...incRows(d, samples));
  r.targets.push(secondRunBytes(d, samples));
  await rm(dir, { recursive: true, force: true });
  await removeBenchResources(g.docker, g.runId);
}

export async function runIncrementalGroup(g: GroupCtx): Promise<IncGroupResult> {
  const sizes = incSizesFromEnv();
  const r: IncGroupResult = {
    sizes,
    datasets: [],
    rows: [],
    targets: [],
    checks: [],
    s3: [],
    memory: [],
    memoryE2e: [],
  };
  if (sizes.sets.includes('smoke')) await smokeSet(g, r);
  if (sizes.sets.includes('main')) await blobSet(g, r, 'main');
  if (sizes.sets.includes('many')) await blobSet(g, r, 'many');
  if (sizes.sets.includes('downtime')) await downtimeSets(g, r);
  if (sizes.sets.includes('memory')) {
    const blobs = Math.round(Number(process.env.BENCH_INC_INDEX_BLOBS ?? 1_000_000));
    g.log(`memory: index of ${blobs} blobs`);
    r.memory = await measureIndexMemory(g.env.work, blobs);
    const e2e = Math.round(Number(process.env.BENCH_INC_E2E_BLOBS ?? blobs));
    r.memoryE2e = await measureMemoryE2e(g, e2e);
    for (const f of r.memoryE2e)
      r.targets.push(target(`${f.command}, ${e2e} blobs: peak RSS (MB)`, f.peakRssMb, '<=', 150, e2eNote(f)));
    await removeBenchResources(g.docker, g.runId);
  }
  return r;
}

function e2eNote(f: E2eFigure): string {
  return `node's VmHWM; children ${f.childRssMb} MB${f.children ? ` (${f.children})` : ''}; ${(f.ms / 1000).toFixed(1)} s`;
}

/** Lines for the end of the printed table: S3 requests and the 1M-blob memory figures. */
export function incFigures(r: IncGroupResult): string[] {
  const lines = r.s3.map(
    (s) =>
      `S3 ${s.run}${s.run.startsWith('restore') ? '' : ' run'} (BACKUP_STORE_FRAMES=${s.frames}${s.age ? ', age' : ''}): ${s.total} requests (${Object.entries(
        s.requests,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(
          ', ',
        )}) for ${(s.storedBytes / 1e6).toFixed(1)} MB stored${s.storedBytes > 0 ? ` = ${s.perGb.toFixed(0)} per GB` : ''}, ${(s.downloaded / 1e6).toFixed(1)} MB downloaded; peak RSS ${s.peakRssMb} MB; ${(s.ms / 1000).toFixed(2)} s`,
  );
  const rest = r.memory.find((m) => m.mode === 'rest')?.peakRssMb ?? Number.NaN;
  for (const m of r.memory)
    lines.push(
      `index memory, ${m.blobs} blobs, ${m.mode}: peak RSS ${m.peakRssMb} MB (+${m.peakRssMb - rest} over rest), heap used ${m.heapUsedMb} MB, index tables ${m.indexMb} MB`,
    );
  for (const f of r.memoryE2e)
    lines.push(`end to end, ${f.command}: peak RSS ${f.peakRssMb} MB; ${e2eNote(f)}`);
  return lines;
}
