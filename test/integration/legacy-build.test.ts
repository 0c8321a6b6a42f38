import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { docker, IMAGES, TEST_LABEL, uniqueName } from '../harness/docker.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** bash with scripts/legacy-build.sh sourced, in the repository (as provision.sh and build-image.sh run it). */
function bash(script: string) {
  return spawn('bash', ['-c', `set -euo pipefail; . scripts/legacy-build.sh; ${script}`], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

async function volumeExists(name: string): Promise<boolean> {
  return docker()
    .getVolume(name)
    .inspect()
    .then(
      () => true,
      () => false,
    );
}

/**
 * What provision.sh and build-image.sh do after each classic-builder build, on the real engine: the volumes
 * the build left (new, unused, unlabelled, with an anonymous volume's name) go; everything else stays, above
 * all what other runs on the shared engine have: older volumes, labelled or named ones, one a container uses.
 */
describe('scripts/legacy-build.sh: the anonymous volumes a classic build leaves', () => {
  // Anonymous and unlabelled ones cannot carry the test label: removed by name here (a sweep by the run's
  // label would take the other files' containers of this run too).
  const made: string[] = [];
  const containers: string[] = [];
  const runId = inject('runId');
  afterAll(async () => {
    for (const c of containers)
      await docker()
        .getContainer(c)
        .remove({ force: true })
        .catch(() => undefined);
    for (const v of made)
      await docker()
        .getVolume(v)
        .remove({ force: true })
        .catch(() => undefined);
  });

  it('removes the new, unused, unlabelled anonymous volumes and nothing else', async () => {
    const d = docker();
    const anonymous = async (labels?: Record<string, string>) => {
      const v = await d.createVolume(labels ? { Labels: labels } : {});
      made.push(v.name);
      return v.name;
    };
    const older = await anonymous();
    // The volume list is taken, then the test stands in for the build, then the cleanup runs.
    const child = bash(
      'before="$(docker volume ls -q)"; echo listed; read -r _; remove_new_anonymous_volumes "$before"',
    );
    const lines = createInterface({ input: child.stdout });
    const [first] = (await once(lines, 'line')) as string[];
    expect(first).toBe('listed');
    const left = await anonymous();
    const labelled = await anonymous({ [TEST_LABEL]: runId });
    const used = await anonymous();
    const user = uniqueName('volume-user');
    containers.push(user);
    await d.createContainer({
      name: user,
      Image: IMAGES.busybox,
      Labels: { [TEST_LABEL]: runId },
      HostConfig: { Binds: [`${used}:/data`] },
    });
    const named = uniqueName('named');
    await d.createVolume({ Name: named });
    made.push(named);
    child.stdin.end('go\n');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(left).toMatch(/^[0-9a-f]{64}$/);
    expect(await volumeExists(left)).toBe(false);
    for (const kept of [older, labelled, used, named]) expect(await volumeExists(kept), kept).toBe(true);
  });

  it("legacy_build returns a failed build's status and leaves neither its container nor its volume", async () => {
    const ctx = await mkdtemp(join(tmpdir(), 'mbs-legacy-build-'));
    try {
      const marker = uniqueName('fail');
      await writeFile(
        join(ctx, 'Dockerfile'),
        `FROM ${IMAGES.busybox}\nVOLUME /data\nRUN echo ${marker}; exit 3\n`,
      );
      const child = bash(
        `s=0; legacy_build -q -t ${uniqueName('never')} '${ctx}' >/dev/null 2>&1 || s=$?; echo "status $s"`,
      );
      child.stdin.end();
      const out: string[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b.toString()));
      await once(child, 'exit');
      expect(out.join('').trim()).toMatch(/^status [1-9]\d*$/);
      // The failed step ran in a container from this Dockerfile's VOLUME image: gone, and its volume too.
      const failed = await docker().listContainers({ all: true, filters: { ancestor: [IMAGES.busybox] } });
      const step = failed.filter((c) => c.Command.includes(marker));
      expect(step.map((c) => c.Id)).toEqual([]);
    } finally {
      await rm(ctx, { recursive: true, force: true });
    }
  });
});
