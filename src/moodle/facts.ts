import type Docker from 'dockerode';
import { firstTarFile } from '../archive/first-file.js';
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
      const text = (await firstTarFile(tar, 256 * 1024))?.toString('utf8');
      const facts = text ? parseVersionPhp(text) : null;
      if (facts) return facts;
    } catch {
      // not there
    }
  }
  return null;
}
