import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { VolumeTotal } from './progress.js';

const SCAN_LIMIT_MS = 5000;

/**
 * A quick estimate of the tar a directory makes, for the progress line when no earlier snapshot gives one:
 * `find` lists sizes (one header block per entry, file bodies in 512-byte blocks). Excludes are not applied,
 * so it errs high. Gives up (undefined) after a few seconds or on any error: it only feeds a display.
 */
export async function scanTarSize(dir: string, limitMs = SCAN_LIMIT_MS): Promise<VolumeTotal | undefined> {
  const find = spawn('find', [dir, '-xdev', '-printf', '%y %s\n'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const timer = setTimeout(() => find.kill('SIGKILL'), limitMs);
  let bytes = 1024; // the two end-of-archive blocks
  let files = 0;
  try {
    for await (const line of createInterface({ input: find.stdout })) {
      const [type, size] = line.split(' ');
      bytes += 512;
      if (type === 'f') {
        files++;
        bytes += Math.ceil(Number(size) / 512) * 512;
      }
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
): Promise<Record<string, VolumeTotal>> {
  const out: Record<string, VolumeTotal> = {};
  for (const v of names) {
    const before = previous[v.short];
    if (before !== undefined) out[v.short] = { bytes: before, estimated: true };
    else out[v.short] = (v.dir ? await scanTarSize(v.dir) : undefined) ?? { estimated: true };
  }
  return out;
}
