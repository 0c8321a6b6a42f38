import { spawn } from 'node:child_process';
import type { VolumeTotal } from './progress.js';

const SCAN_LIMIT_MS = 5000;

/**
 * A quick estimate of the tar a directory makes, for the progress line when no earlier snapshot gives one:
 * `find` lists sizes (one header block per entry, file bodies in 512-byte blocks). Excludes are not applied,
 * so it errs high; files `leaveOut` names (relative paths: an incremental volume's blobs, which go to the
 * store) count as absent. Gives up (undefined) after a few seconds or on any error: it only feeds a display.
 */
export async function scanTarSize(
  dir: string,
  limitMs = SCAN_LIMIT_MS,
  leaveOut?: (path: string) => boolean,
): Promise<VolumeTotal | undefined> {
  // NUL-terminated: a name may hold any other byte, a newline included.
  const find = spawn('find', [dir, '-xdev', '-printf', '%y %s %P\\0'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const timer = setTimeout(() => find.kill('SIGKILL'), limitMs);
  let bytes = 1024; // the two end-of-archive blocks
  let files = 0;
  let rest = '';
  const entry = (r: string) => {
    const [type, size] = r.split(' ', 2);
    const path = r.slice(r.indexOf(' ', r.indexOf(' ') + 1) + 1);
    if (type === 'f' && leaveOut?.(path)) return;
    bytes += 512;
    if (type === 'f') {
      files++;
      bytes += Math.ceil(Number(size) / 512) * 512;
    }
  };
  try {
    for await (const chunk of find.stdout) {
      const records = (rest + (chunk as Buffer).toString('utf8')).split('\0');
      rest = records.pop() ?? '';
      for (const r of records) entry(r);
    }
    const code = await new Promise<number | null>((resolve) => {
      if (find.exitCode !== null || find.signalCode !== null) resolve(find.exitCode);
      else find.once('close', (c) => resolve(c));
    });
    if (code !== 0) return undefined;
    return { bytes: Math.ceil(bytes / 10240) * 10240, files, estimated: true };
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Each volume's expected size: the previous snapshot's raw size, else a scan of its directory. */
export async function progressTotals(
  names: { short: string; dir?: string | null }[],
  previous: Record<string, number>,
  leaveOut?: (path: string) => boolean,
): Promise<Record<string, VolumeTotal>> {
  const out: Record<string, VolumeTotal> = {};
  for (const v of names) {
    const before = previous[v.short];
    if (before !== undefined) out[v.short] = { bytes: before, estimated: true };
    else
      out[v.short] = (v.dir ? await scanTarSize(v.dir, SCAN_LIMIT_MS, leaveOut) : undefined) ?? {
        estimated: true,
      };
  }
  return out;
}
