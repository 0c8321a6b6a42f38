import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, execIn, IMAGES } from '../harness/docker.js';
import {
  hostHasDocker0,
  netnsList,
  type SecondEngine,
  secondEngineUnavailable,
  startSecondEngine,
} from '../harness/second-engine.js';

/**
 * The test bed's second engine (test/harness/second-engine.ts) does what its users rely on: containers reach
 * each other by service name on the engine's own bridge, the main engine keeps docker0, a power loss is
 * survived by a container with a restart policy, and the teardown leaves nothing behind.
 */

const unavailable = secondEngineUnavailable();
if (unavailable)
  console.warn(`\n!!!!!!!! second-engine bed test SKIPPED: ${unavailable} (CI=1 makes this a failure).\n`);

describe.skipIf(unavailable !== null && !process.env.CI)('second Docker engine', () => {
  let engine: SecondEngine;
  const busybox = IMAGES.busybox;

  beforeAll(async () => {
    expect(await hostHasDocker0()).toBe(true);
    engine = await startSecondEngine();
    await engine.load([busybox]);
  }, 120_000);

  afterAll(async () => {
    const { name, dir } = engine ?? {};
    await engine?.destroy();
    expect(await hostHasDocker0(), 'the main engine keeps docker0').toBe(true);
    if (name) expect(await netnsList()).not.toContain(name);
    if (dir) expect(existsSync(dir)).toBe(false);
    if (name) expect(existsSync(`/sys/fs/cgroup/pids/${name}`)).toBe(false);
  }, 60_000);

  it('runs containers that reach each other by name on a network of the engine, not on the main engine', async () => {
    const d = engine.docker;
    await d.createNetwork({ Name: 'bed_default' });
    const server = await d.createContainer({
      name: 'bed-server',
      Image: busybox,
      Cmd: ['sh', '-c', 'mkdir -p /w && echo second-engine > /w/i && exec httpd -f -p 8000 -h /w'],
      HostConfig: { NetworkMode: 'bed_default', RestartPolicy: { Name: 'unless-stopped' } },
      NetworkingConfig: { EndpointsConfig: { bed_default: { Aliases: ['srv'] } } },
    });
    await server.start();
    const client = await d.createContainer({
      name: 'bed-client',
      Image: busybox,
      Cmd: ['sleep', '600'],
      HostConfig: { NetworkMode: 'bed_default' },
    });
    await client.start();
    let body = '';
    for (let i = 0; i < 50 && body !== 'second-engine\n'; i++) {
      body = (await execIn('bed-client', ['wget', '-q', '-O-', 'http://srv:8000/i'], { client: d })).stdout;
      if (body !== 'second-engine\n') await sleep(100);
    }
    expect(body).toBe('second-engine\n');
    // The main engine does not know these containers.
    const main = await docker().listContainers({ all: true });
    expect(main.map((c) => c.Names[0])).not.toContain('/bed-server');
  });

  it('brings a restart-policy container back after a power loss; one without a policy stays down', async () => {
    const d = engine.docker;
    const before = (await d.getContainer('bed-server').inspect()).State.StartedAt;
    await engine.powerLoss();
    await expect(d.ping()).rejects.toThrow();
    await engine.start();
    let state = (await d.getContainer('bed-server').inspect()).State;
    for (let i = 0; i < 100 && !(state.Running && state.StartedAt !== before); i++) {
      await sleep(100);
      state = (await d.getContainer('bed-server').inspect()).State;
    }
    expect(state.Running, JSON.stringify(state)).toBe(true);
    expect(state.StartedAt, 'started again, not merely still running').not.toBe(before);
    expect((await d.getContainer('bed-client').inspect()).State.Running).toBe(false);
    // The engine's own bridge works again after the restart.
    await d.getContainer('bed-client').start();
    const r = await execIn('bed-client', ['wget', '-q', '-O-', 'http://srv:8000/i'], { client: d });
    expect(r.stdout).toBe('second-engine\n');
  }, 60_000);
});
