import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { createDataset, DATASETS, type Dataset, sizesFromEnv } from './datasets.js';
import { type IncGroupResult, incFigures, runIncrementalGroup } from './inc-group.js';
import { formatMarkdown, formatTable, type Row, round, type Target, target } from './report.js';
import { startS3 } from './s3.js';
import { baseline, fingerprint, productBackup, productRestore } from './scenarios.js';
import { EventRecorder, removeBenchResources } from './stack.js';
import { runUserGroup, sidecarImage, type UserGroupResult } from './user-view.js';

/**
 * `npm run bench`: makes the data sets in Docker volumes, then measures the baselines and the sidecar on the
 * same data in one run, prints a table and the targets (ratios to the baselines), and writes JSON to
 * bench/results/. Everything it creates is named `mbst-bench-*` and labelled, and removed at the end.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'main.js');

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the bench reads volume directories on the host: run it as root');
  const sizes = sizesFromEnv();
  const runId = `mbst-bench-${Date.now().toString(36)}`;
  const work = process.env.BENCH_WORK_DIR ?? join('/var/tmp', runId);
  const outDir = process.env.BENCH_OUT_DIR ?? join(ROOT, 'bench', 'results');
  const image = process.env.BENCH_IMAGE ?? 'mbs-test/base:latest';
  const helperImage = process.env.BENCH_HELPER_IMAGE ?? image;
  const docker = new Docker();
  const events = new EventRecorder();
  const t0 = Date.now();
  const log = (m: string) => process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}\n`);
  await mkdir(work, { recursive: true });
  const s3 = await startS3(work);
  const cleanup = async () => {
    events.stop();
    await removeBenchResources(docker, runId);
    await s3.stop();
    await rm(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void cleanup().finally(() => process.exit(143)));
  try {
    await events.start(docker, runId);
    log(`data: mix ${sizes.mixMb} MB, ${sizes.smallFiles} small files, big ${sizes.bigMb} MB`);
    const datasets: Pick<Dataset, 'name' | 'files' | 'bytes'>[] = [];
    const env = { cli: CLI, work, helperImage, events, s3Env: s3.env, repeat: sizes.repeat };
    const rows: Row[] = [];
    const checks: string[] = [];
    const only = (process.env.BENCH_ONLY ?? '').split(',').filter(Boolean);
    for (const name of DATASETS.filter((d) => only.length === 0 || only.includes(d))) {
      const ds = await createDataset(docker, runId, image, sizes, name);
      execFileSync('sync');
      datasets.push({ name: ds.name, files: ds.files, bytes: ds.bytes });
      log(`${ds.name}: ${ds.files} files, ${(ds.bytes / 1048576).toFixed(0)} MB`);
      // Every restore is checked byte for byte, the 10 GB one too.
      const before = await fingerprint(env, ds);
      const local = await productBackup(env, ds, 'local', 'zstd', ds.name === 'big' ? 1 : sizes.repeat);
      const bytes = local.rawBytes;
      const base = (which: Parameters<typeof baseline>[2]) => baseline(env, ds, which, bytes);
      rows.push(await base('tar|zstd'));
      rows.push(...local.rows);
      if (ds.name === 'mix') {
        for (const b of [
          'tar -czf',
          'tar|gzip',
          'tar|pigz',
          'tar|node-zlib-gzip',
          'docker stop+start',
        ] as const) {
          log(`mix: baseline ${b}`);
          rows.push(await base(b));
        }
        log('mix: sidecar gzip, S3');
        rows.push(...(await productBackup(env, ds, 'local', 'gzip', sizes.repeat)).rows);
        rows.push(...(await productBackup(env, ds, 's3', 'zstd', 1)).rows);
        // A real Moodle backup filters the dataroot's tar stream (cache, temp, sessions are left out).
        const moodleExcludes = { moodledata_data: ['cache/', 'localcache/', 'temp/', 'sessions/'] };
        rows.push(...(await productBackup(env, ds, 'local', 'zstd', 1, moodleExcludes)).rows);
        // The read path before the mount path existed (Docker's archive API), measured on the same data.
        rows.push(...(await productBackup(env, ds, 'local', 'zstd', 1, undefined, 'docker')).rows);
      }
      if (ds.name !== 'big') rows.push(await base('zstd -d|tar -x'));
      log(`${ds.name}: restore`);
      // putArchive first, so the fingerprint check below sees the default (mount) path's result.
      if (ds.name === 'mix') rows.push(await productRestore(env, ds, local.snapshot, bytes, 1, 'docker'));
      rows.push(await productRestore(env, ds, local.snapshot, bytes, ds.name === 'big' ? 1 : sizes.repeat));
      if (before) {
        const after = await fingerprint(env, ds);
        checks.push(`${ds.name}: restored bytes ${after === before ? 'equal' : 'DIFFER FROM'} the original`);
        if (after !== before) throw new Error(`${ds.name}: the restored volumes differ from the originals`);
      }
      // Free the disk before the next data set (the big one needs room for its archive).
      await rm(join(work, `archive-${ds.name}-zstd`), { recursive: true, force: true });
      await rm(join(work, `archive-${ds.name}-gzip`), { recursive: true, force: true });
      await rm(join(work, `archive-${ds.name}-zstd-excludes`), { recursive: true, force: true });
      await rm(join(work, `archive-${ds.name}-zstd-docker-path`), { recursive: true, force: true });
      await rm(join(work, `base-${ds.name}-zst`), { recursive: true, force: true });
      await removeBenchResources(docker, runId);
    }
    // The incremental group (issue 17): its own data sets, medians of interleaved rounds.
    let inc: IncGroupResult | undefined;
    if (only.length === 0 || only.includes('incremental')) {
      inc = await runIncrementalGroup({ docker, runId, image, env, log });
      rows.push(...inc.rows);
      checks.push(...inc.checks);
    }
    // The user's view (issue 19): the image in a Compose-like stack, timed through `docker exec`.
    let user: UserGroupResult | undefined;
    if (only.length === 0 || only.includes('user')) {
      const sc = sidecarImage(ROOT, log);
      user = await runUserGroup({ docker, runId, image, sidecarImage: sc, sizes, env, log });
      rows.push(...user.rows);
      checks.push(...user.checks);
    }
    const measuredSets = only.length === 0 || only.some((o) => (DATASETS as readonly string[]).includes(o));
    const targets = [...(measuredSets ? evaluate(rows) : [])];
    targets.push(...(inc?.targets ?? []));
    targets.push(...(user?.targets ?? []));
    const table = formatTable(rows, targets);
    const figures = [...(inc ? incFigures(inc) : []), ...(user?.figures ?? [])];
    process.stdout.write(`\n${table}\n\n${[...checks, ...figures].join('\n')}\n`);
    await mkdir(outDir, { recursive: true });
    const file = join(outDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const result = {
      runId,
      startedAt: new Date(t0).toISOString(),
      totalSeconds: round((Date.now() - t0) / 1000, 1),
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      sizes,
      datasets,
      rows,
      targets,
      checks,
      incremental: inc && {
        sizes: inc.sizes,
        datasets: inc.datasets,
        s3: inc.s3,
        memory: inc.memory,
        memoryE2e: inc.memoryE2e,
        figures,
      },
      user: user && { image: user.image, startup: user.startup, figures: user.figures },
      markdown: formatMarkdown(rows, targets),
    };
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    log(`results: ${file}`);
  } finally {
    await cleanup();
  }
}

function find(rows: Row[], dataset: string, key: string): Row {
  const r = rows.find((x) => x.dataset === dataset && x.key === key);
  // BENCH_ONLY runs leave rows out; their targets then read as missed (NaN), never as met.
  return (
    r ?? { dataset, key, label: key, kind: 'product', bytes: 0, ms: Number.NaN, mbps: Number.NaN, load1: 0 }
  );
}

/** The targets as ratios of throughput (or time) to the baselines measured in the same run. */
function evaluate(rows: Row[]): Target[] {
  const m = (k: string) => find(rows, 'mix', k);
  const local = m('product:backup-local-zstd');
  const gz = m('product:backup-local-gzip');
  const s3 = m('product:backup-s3-zstd');
  const restore = m('product:restore-local-zstd');
  const big = find(rows, 'big', 'product:backup-local-zstd');
  const bigRestore = find(rows, 'big', 'product:restore-local-zstd');
  const untar = m('baseline:zstd -d|tar -x');
  return [
    target(
      'backup local zstd / tar|zstd -T0 -3',
      local.mbps / m('baseline:tar|zstd').mbps,
      '>=',
      0.8,
      'end to end, CLI start to exit',
    ),
    target('backup local zstd / tar -czf', local.mbps / m('baseline:tar -czf').mbps, '>=', 5, 'end to end'),
    target(
      'backup gzip / node zlib gzip 1 thread',
      gz.mbps / m('baseline:tar|node-zlib-gzip').mbps,
      '>=',
      1.5,
      'gzip level 6 both',
    ),
    target(
      'restore / zstd -d|tar -x (whole restore)',
      restore.mbps / untar.mbps,
      '>=',
      0.8,
      'verify pass + extract, CLI start to exit',
    ),
    target(
      'backup gzip / tar|pigz -6',
      gz.mbps / m('baseline:tar|pigz').mbps,
      '>=',
      0.8,
      'parallel gzip both, level 6',
    ),
    target(
      'restore downtime / docker stop+start',
      (restore.downtimeMs ?? Number.NaN) / m('baseline:docker stop+start').ms,
      '<=',
      1.2,
      'Docker events vs the same stop and start from outside',
    ),
    target(
      'downtime / read+compress time (local)',
      (local.downtimeMs ?? Number.NaN) / (local.pipelineMs ?? Number.NaN),
      '<=',
      1.2,
      'Docker events vs the pipeline',
    ),
    target(
      'downtime / read+compress time (S3)',
      (s3.downtimeMs ?? Number.NaN) / (s3.pipelineMs ?? Number.NaN),
      '<=',
      1.2,
      s3.note ?? '',
    ),
    target(
      'peak RSS backup 10 GB (MB)',
      big.peakRssMb ?? Number.NaN,
      '<=',
      150,
      `${(big.bytes / 1073741824).toFixed(1)} GiB`,
    ),
    target(
      'peak RSS restore 10 GB (MB)',
      bigRestore.peakRssMb ?? Number.NaN,
      '<=',
      150,
      `${(bigRestore.bytes / 1073741824).toFixed(1)} GiB`,
    ),
  ];
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
