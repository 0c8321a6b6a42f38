import type { Manifest, ManifestDatabase, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { drillDump } from '../database/drill.js';
import { verifyDump } from '../database/load.js';
import type { VerifyLevel, VerifyOptions, VerifyResult } from './types.js';

/** What verify/run.ts lends this module (passed in, so the two do not import each other). */
export interface DumpVerifyDeps {
  failure(
    m: Manifest,
    v: ManifestVolume,
    level: VerifyLevel,
    err: unknown,
    t0: number,
    log: VerifyOptions['log'],
  ): VerifyResult;
  drillPrefix: string;
  /** The terminal's progress lines: the archive check's, and the drill's load. */
  progress?: { check?: NodeJS.ReadWriteStream; drill?: NodeJS.ReadWriteStream };
}

function ms(t0: number): number {
  return Date.now() - t0;
}

/** An online snapshot's dump: size, sha256, decompression and rows per table against the manifest. */
export async function verifyDumpResult(
  o: VerifyOptions,
  m: Manifest,
  db: ManifestDatabase,
  deps: DumpVerifyDeps,
): Promise<VerifyResult[]> {
  const { failure } = deps;
  const t0 = Date.now();
  const v = { name: db.volume.name } as ManifestVolume;
  let archive: VerifyResult;
  try {
    const r = await verifyDump(o.backend, m, db, {
      signal: o.signal,
      encryption: o.config.encryption,
      progress: deps.progress?.check,
    });
    const detail = `sha256 ok, ${db.file}: ${r.tables} tables, ${r.rows} rows as in the manifest`;
    o.log.info({ step: 'verify', snapshot: m.id, file: db.file, ms: ms(t0) }, `verified ${db.file}`);
    archive = { snapshot: m.id, volume: v.name, level: 'archive', ok: true, detail, ms: ms(t0) };
  } catch (err) {
    if (o.signal?.aborted) throw err;
    return [failure(m, v, 'archive', err, t0, o.log)];
  }
  if (!o.deep) return [archive];
  const t1 = Date.now();
  try {
    const { tool, tables, bad } = await drillDump({
      ...o,
      manifest: m,
      db,
      encryption: o.config.encryption,
      prefix: deps.drillPrefix,
      progress: deps.progress?.drill,
    });
    if (tables === 0 || bad.length > 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        tables === 0
          ? `${tool} listed no tables in the loaded dump`
          : `${bad.length} of ${tables} tables failed ${tool}: ${bad.slice(0, 5).join('; ')}`,
      );
    }
    const detail = `loaded ${db.file} into a scratch server, rows per table as in the manifest; ${tool}: ${tables} tables OK`;
    o.log.info({ step: 'drill', snapshot: m.id, file: db.file, ms: ms(t1) }, `drill ${db.file}: ${detail}`);
    return [archive, { snapshot: m.id, volume: v.name, level: 'drill', ok: true, detail, ms: ms(t1) }];
  } catch (err) {
    if (o.signal?.aborted) throw err;
    return [archive, failure(m, v, 'drill', err, t1, o.log)];
  }
}
