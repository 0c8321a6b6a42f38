import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SIDECAR_NODE, SIDECAR_NODE_FLAGS } from './measure.js';

const SCRIPT = fileURLToPath(new URL('./index-memory.js', import.meta.url));

export interface MemoryFigure {
  mode: 'rest' | 'backup' | 'restore';
  blobs: number;
  peakRssMb: number;
  heapUsedMb: number;
  indexMb: number;
}

/**
 * The 1M-blob memory bound: index files for `blobs` blobs are synthesised (no packs, no files), then three
 * processes with the sidecar's Node flags report their peak RSS: at rest with the store's modules loaded,
 * a backup's index load and listing check, a restore's index load, blob set and closure check.
 */
export async function measureIndexMemory(work: string, blobs: number): Promise<MemoryFigure[]> {
  const dir = join(work, 'index-memory');
  const node = (mode: string) =>
    promisify(execFile)(SIDECAR_NODE, [...SIDECAR_NODE_FLAGS, SCRIPT, mode, dir, String(blobs)], {
      maxBuffer: 1 << 20,
    });
  try {
    await node('gen');
    const out: MemoryFigure[] = [];
    for (const mode of ['rest', 'backup', 'restore'] as const) {
      out.push(JSON.parse((await node(mode)).stdout) as MemoryFigure);
    }
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
