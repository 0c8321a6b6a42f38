import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';
import { inject } from 'vitest';
import { docker, execIn, IMAGES, TEST_LABEL, uniqueName } from './docker.js';
import { diffFingerprints, type VolumeFingerprint } from './fingerprint.js';
import type { MoodleStack } from './stack.js';

export const DATAROOT = '/bitnami/moodledata';
export const FLAG = 'climaintenance.html';

/** The Moodle defaults as a user reads them in the docs: directories whose contents are left out, and files. */
export const EXCLUDED_DIRS = ['cache', 'localcache', 'temp', 'sessions', 'lock'];
export const EXCLUDED_FILES = ['moodle-cron.log', FLAG];

/** Fingerprint entries minus what the default excludes leave out (the directories themselves stay). */
export function minusExcludes(fp: VolumeFingerprint): VolumeFingerprint {
  const entries = fp.entries.filter(
    (e) => !EXCLUDED_FILES.includes(e.path) && !EXCLUDED_DIRS.some((d) => e.path.startsWith(`${d}/`)),
  );
  return { entries, digest: createHash('sha256').update(JSON.stringify(entries)).digest('hex') };
}

export function diffMinusExcludes(a: VolumeFingerprint, b: VolumeFingerprint): string[] {
  return diffFingerprints(minusExcludes(a), minusExcludes(b));
}

/**
 * Whether Moodle's maintenance flag is in the dataroot volume, read from a throwaway container on the volume
 * (works while the Moodle container is stopped, too).
 */
export async function flagInVolume(volume: string): Promise<boolean> {
  const name = uniqueName('flag');
  const c = await docker().createContainer({
    name,
    Image: IMAGES.base,
    Cmd: ['test', '-e', `/v/${FLAG}`],
    Labels: { [TEST_LABEL]: inject('runId') },
    HostConfig: { Binds: [`${volume}:/v:ro`], NetworkMode: 'none' },
  });
  try {
    await c.start();
    const r = (await c.wait()) as { StatusCode: number };
    return r.StatusCode === 0;
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/** Whether a mariadb-dump process runs in the database container right now. */
export async function dumpRunning(stack: MoodleStack): Promise<boolean> {
  const r = await execIn(stack.containers.mariadb, [
    'sh',
    '-c',
    'cat /proc/[0-9]*/comm 2>/dev/null | grep -qx mariadb-dump',
  ]);
  return r.exitCode === 0;
}

/** A logger whose JSON lines a test can read afterwards. */
export function capturingLogger(): { log: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const log = pino({ level: 'info', base: undefined }, sink);
  return {
    log,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
