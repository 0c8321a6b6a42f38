import type { Manifest } from '../archive/manifest.js';
import type { MoodleFacts } from './facts.js';

/** Compares dotted numeric versions (`10.11.6-MariaDB…`, `2024100700.00`): <0, 0, >0. Non-numeric tails are ignored. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) =>
    (v.match(/^[0-9]+(\.[0-9]+)*/)?.[0] ?? '').split('.').map((x) => Number(x) || 0);
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * What a restore should warn about before it starts: software running now that is older than the software
 * that wrote the snapshot (MariaDB does not open a datadir of a newer major version reliably, and Moodle
 * refuses a database newer than its code).
 */
export function olderThanSnapshot(
  snapshot: Pick<Manifest, 'stack'>,
  running: { moodle: MoodleFacts | null; mariadb: string | null },
): string[] {
  const out: string[] = [];
  const sm = snapshot.stack.moodle;
  if (sm && running.moodle && compareVersions(running.moodle.version, sm.version) < 0) {
    out.push(
      `the running Moodle (${running.moodle.release || running.moodle.version}) is older than the snapshot's (${sm.release || sm.version}): ` +
        'restore the code volume too, or update the Moodle image first; Moodle refuses a database newer than its code',
    );
  }
  const sdb = snapshot.stack.mariadb;
  if (sdb && running.mariadb && compareVersions(running.mariadb, sdb.version) < 0) {
    out.push(
      `the running MariaDB (${running.mariadb}) is older than the snapshot's (${sdb.version}): ` +
        'use an image of at least that version, or the restored database may not start',
    );
  }
  return out;
}
