import { afterEach, describe, expect, it } from 'vitest';
import { createDocker } from '../../../src/docker/client.js';

/**
 * createDocker defers two of dockerode's modules to their first use (docker/client.ts): the client must still
 * answer on the local socket, and an ssh:// DOCKER_HOST must still go through ssh2.
 */
describe('createDocker', () => {
  const saved = process.env.DOCKER_HOST;
  afterEach(() => {
    if (saved === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved;
  });

  it('answers on the default socket', async () => {
    delete process.env.DOCKER_HOST;
    expect(String(await createDocker().ping())).toBe('OK');
  });

  it('DOCKER_HOST=ssh:// still connects through ssh2 (loaded on first use)', async () => {
    // Port 1 on the loopback refuses at once: the refusal comes from ssh2's client socket.
    process.env.DOCKER_HOST = 'ssh://nobody@127.0.0.1:1';
    const err = await createDocker()
      .ping()
      .then(
        () => undefined,
        (e: unknown) => e as NodeJS.ErrnoException,
      );
    expect(err?.code).toBe('ECONNREFUSED');
  });
});
