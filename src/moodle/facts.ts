import type Docker from 'dockerode';
import { extract } from 'tar-stream';
import type { Stack } from '../stack/discover.js';
import type { MoodleSite } from './site.js';

export interface MoodleFacts {
  version: string;
  release: string;
}

/** Reads $version and $release from Moodle's version.php (a PHP file with a fixed, simple shape). */
export function parseVersionPhp(text: string): MoodleFacts | null {
  const version = text.match(/^\s*\$version\s*=\s*([0-9.]+)\s*;/m)?.[1];
  const release = text.match(/^\s*\$release\s*=\s*'([^']*)'\s*;/m)?.[1];
  return version ? { version, release: release ?? '' } : null;
}

/**
 * Reads version.php through the Docker API: from the found site's code directory (a mount or the image's
 * own files; `public/` from Moodle 5.1), else from the mounts of the stack's containers.
 */
export async function readMoodleFacts(
  docker: Docker,
  stack: Stack,
  site?: MoodleSite | null,
): Promise<MoodleFacts | null> {
  const places: { id: string; path: string }[] = site
    ? [{ id: site.container.id, path: `${site.codeDir}/version.php` }]
    : stack.containers.flatMap((c) =>
        c.mounts.flatMap((m) => [
          { id: c.id, path: `${m.destination}/version.php` },
          { id: c.id, path: `${m.destination}/public/version.php` },
        ]),
      );
  for (const { id, path } of places) {
    try {
      const tar = await docker.getContainer(id).getArchive({ path });
      const text = await firstFile(tar as unknown as NodeJS.ReadableStream, 256 * 1024);
      const facts = text ? parseVersionPhp(text) : null;
      if (facts) return facts;
    } catch {
      // not there
    }
  }
  return null;
}

async function firstFile(tar: NodeJS.ReadableStream, limit: number): Promise<string | null> {
  const ex = extract();
  let result: string | null = null;
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (d: unknown) => {
        if (!Buffer.isBuffer(d)) return;
        size += d.length;
        if (size <= limit) chunks.push(d);
      });
      stream.on('end', () => {
        if (result === null && header.type === 'file') result = Buffer.concat(chunks).toString('utf8');
        next();
      });
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  tar.pipe(ex);
  await done;
  return result;
}
