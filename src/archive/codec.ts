import { type Duplex, PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { SidecarError } from '../common/errors.js';
import { onPath } from '../common/on-path.js';
import type { Codec } from '../config/types.js';
import { ParallelGzip } from './gzip-parallel.js';
import { spawnFilter } from './spawn-filter.js';

export interface CodecImpl {
  name: Codec;
  /** File name ending of archives made with it. */
  extension: string;
  compress(level?: number): Duplex;
  decompress(): Duplex;
  /**
   * The compressor as a command line (stdin → stdout) when it runs as a binary on this machine, else null:
   * then another child process can feed it directly (volume/dir-tar-compressed.ts), bypassing Node.
   */
  command?(level?: number): { cmd: string; args: string[] } | null;
}

function hasZstdBinary(): boolean {
  return onPath('zstd');
}

// Node >= 22.15 ships zstd in zlib; typed loosely because @types/node 20 does not know it.
const nodeZstd = zlib as unknown as {
  createZstdCompress?: (o?: object) => Duplex;
  createZstdDecompress?: () => Duplex;
  constants: Record<string, number>;
};

/**
 * zstd runs as the `zstd` binary with -T0: on 2 cores it compresses ~5x faster than single-threaded zlib
 * gzip at a similar ratio (docs/design.md has the figures). Node's own zstd is the fallback.
 */
const zstd: CodecImpl = {
  name: 'zstd',
  extension: '.tar.zst',
  command(level = 3) {
    return hasZstdBinary() ? { cmd: 'zstd', args: ['-T0', `-${level}`, '-q', '-c'] } : null;
  },
  compress(level = 3) {
    const bin = this.command?.(level);
    if (bin) return spawnFilter(bin.cmd, bin.args);
    if (nodeZstd.createZstdCompress) {
      return nodeZstd.createZstdCompress({
        params: { [nodeZstd.constants.ZSTD_c_compressionLevel ?? 100]: level },
      });
    }
    throw unavailable();
  },
  decompress() {
    if (hasZstdBinary()) return spawnFilter('zstd', ['-d', '-q', '-c']);
    if (nodeZstd.createZstdDecompress) return nodeZstd.createZstdDecompress();
    throw unavailable();
  },
};

function unavailable(): SidecarError {
  return new SidecarError(
    'CODEC_UNAVAILABLE',
    'zstd is not available (no zstd binary on PATH, and this Node has no built-in zstd)',
    'install zstd (apt-get install zstd) or set BACKUP_COMPRESSION=gzip',
  );
}

const gzip: CodecImpl = {
  name: 'gzip',
  extension: '.tar.gz',
  // Independent members compressed on all cores (archive/gzip-parallel.ts); any gunzip reads the result.
  compress(level = 6) {
    return new ParallelGzip(level);
  },
  decompress() {
    return zlib.createGunzip();
  },
};

const none: CodecImpl = {
  name: 'none',
  extension: '.tar',
  compress() {
    return new PassThrough();
  },
  decompress() {
    return new PassThrough();
  },
};

const CODECS: Record<Codec, CodecImpl> = { zstd, gzip, none };

export function getCodec(name: Codec): CodecImpl {
  const c = CODECS[name];
  if (!c)
    throw new SidecarError('CODEC_UNAVAILABLE', `unknown codec "${String(name)}"`, 'use zstd, gzip or none');
  return c;
}
