import { inject } from 'vitest';
import { docker, execOk, IMAGES, TEST_LABEL, uniqueName } from './docker.js';

/**
 * Extracts an archive file from the host into a new Docker volume with plain GNU tar (and zstd/gzip),
 * the way a user without this tool would. Returns the volume's name.
 */
export async function extractWithPlainTar(
  hostFile: string,
  codec: 'zstd' | 'gzip' | 'none',
): Promise<string> {
  const d = docker();
  const volume = uniqueName('x');
  await d.createVolume({ Name: volume, Labels: { [TEST_LABEL]: inject('runId') } });
  const name = uniqueName('tar');
  const c = await d.createContainer({
    name,
    Image: IMAGES.base,
    Cmd: ['sleep', '600'],
    Labels: { [TEST_LABEL]: inject('runId') },
    HostConfig: { Binds: [`${hostFile}:/in/archive:ro`, `${volume}:/out`], NetworkMode: 'none' },
  });
  try {
    await c.start();
    const dec = codec === 'zstd' ? 'zstd -dc' : codec === 'gzip' ? 'gzip -dc' : 'cat';
    await execOk(name, ['sh', '-c', `${dec} /in/archive | tar -x --numeric-owner -p -C /out -f -`]);
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
  return volume;
}
