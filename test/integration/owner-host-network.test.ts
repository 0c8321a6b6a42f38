import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { docker, TEST_LABEL, uniqueName } from '../harness/docker.js';
import { buildSidecarImage, containerLogs, SIDECAR_IMAGE } from '../harness/sidecar-image.js';

/**
 * In the sidecar image with `network_mode: host` every container has the machine's host name, and PID 1
 * of each is its own `serve`. A helper label written in one must read as foreign to another sidecar running
 * beside it (its helpers are left alone), though host, boot and PID are the same, and as dead to the same
 * container after a restart (crash recovery sweeps them). Each run prints the owner it is and what the
 * sweep's rule (recover/sweep-helpers.ts ownerIsDead) makes of the label written first; with STAY=1 it
 * then stays up, as `serve` does.
 */
const PROBE = `
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const { currentOwner, ownerLabel } = await import('/app/dist/common/owner.js');
const { ownerIsDead } = await import('/app/dist/recover/sweep-helpers.js');
const file = '/probe/label';
if (!existsSync(file)) writeFileSync(file, ownerLabel());
const label = readFileSync(file, 'utf8');
console.log('PROBE ' + JSON.stringify({ me: currentOwner(), label, dead: ownerIsDead(label) }));
if (process.env.STAY) setInterval(() => {}, 1000);
`;

interface Probe {
  me: { host: string; pid: number; pidNs?: string; container?: string };
  label: string;
  dead: boolean;
}

describe('owner identity of host-network sidecars (one host name, a PID namespace each)', () => {
  let dir: string;
  const runId = inject('runId');
  const made: string[] = [];

  beforeAll(async () => {
    const build = await buildSidecarImage();
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    dir = await mkdtemp(join(tmpdir(), 'mbst-owner-'));
    await writeFile(join(dir, 'probe.mjs'), PROBE);
  });
  afterAll(async () => {
    for (const c of made)
      await docker()
        .getContainer(c)
        .remove({ force: true, v: true })
        .catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function start(stay: boolean): Promise<string> {
    const name = uniqueName('owner');
    made.push(name);
    const c = await docker().createContainer({
      name,
      Image: SIDECAR_IMAGE,
      Entrypoint: ['node', '/probe/probe.mjs'],
      Env: stay ? ['STAY=1'] : [],
      Labels: { [TEST_LABEL]: runId },
      HostConfig: { NetworkMode: 'host', Binds: [`${dir}:/probe`] },
    });
    await c.start();
    return name;
  }

  /** The container's `n`th probe line (its runs, restarts included, each print one), waited for. */
  async function probe(name: string, n: number): Promise<Probe> {
    const end = Date.now() + 30_000;
    let logs = '';
    while (Date.now() < end) {
      logs = await containerLogs(name);
      const lines = logs.split('\n').filter((l) => l.startsWith('PROBE '));
      const line = lines[n - 1];
      if (line) return JSON.parse(line.slice('PROBE '.length)) as Probe;
      await sleep(200);
    }
    throw new Error(`no probe line ${n} from ${name}: ${logs.slice(-2000)}`);
  }

  it('another sidecar beside a running one leaves its helpers; the same one restarted sweeps them', async () => {
    const first = await start(true);
    const before = await probe(first, 1);
    expect(before.me.pid).toBe(1);
    expect(before.me.container).toMatch(/^[0-9a-f]{64}$/);
    expect(before.label.split(':')).toHaveLength(6);
    expect(await readFile(join(dir, 'label'), 'utf8')).toBe(before.label);

    // Judged by the PID in its own namespace (PID 1 runs there, started at another time), the running
    // sidecar would be dead to this one.
    const beside = await probe(await start(false), 1);
    expect(beside.me.host).toBe(before.me.host);
    expect(beside.me.pid).toBe(1);
    expect(beside.me.container).not.toBe(before.me.container);
    expect(beside.dead).toBe(false);

    const c = docker().getContainer(first);
    await c.kill({ signal: 'SIGKILL' });
    await c.wait();
    await c.start();
    const restarted = await probe(first, 2);
    expect(restarted.me.host).toBe(before.me.host);
    expect(restarted.me.pid).toBe(1);
    expect(restarted.me.container).toBe(before.me.container);
    // A restart makes a new PID namespace; the kernel may give it the freed inode number again (then the
    // start time of PID 1 tells the runs apart), or another (then the container does).
    expect(restarted.dead).toBe(true);
  });
});
