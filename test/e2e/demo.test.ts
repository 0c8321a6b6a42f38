import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { docker } from '../harness/docker.js';
import { ROOT, SIDECAR_IMAGE } from '../harness/sidecar-image.js';

/**
 * The README's first command, `npm run demo` (scripts/demo.sh), end to end as a newcomer runs it: provision
 * (cached here), build the image (cached), start the demo stack with docker-compose, back up, list, damage,
 * restore, and the script's own check that the data are back; then `demo.sh down` removes everything.
 */

const PROJECT = `mbstdemo${Math.random().toString(36).slice(2, 8)}`;

function demo(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['scripts/demo.sh', ...args], {
      cwd: ROOT,
      env: { ...process.env, DEMO_PROJECT: PROJECT, IMAGE: SIDECAR_IMAGE, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    // Bounded: a bare machine's provisioning and image build fit well within it.
    const timer = setTimeout(() => child.kill('SIGKILL'), 14 * 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function leftovers(): Promise<string[]> {
  const filter = { label: [`com.docker.compose.project=${PROJECT}`] };
  const [containers, { Volumes }, networks] = await Promise.all([
    docker().listContainers({ all: true, filters: filter }),
    docker().listVolumes({ filters: filter }),
    docker().listNetworks({ filters: filter }),
  ]);
  return [
    ...containers.map((c) => `container ${c.Names[0]}`),
    ...(Volumes ?? []).map((v) => `volume ${v.Name}`),
    ...networks.map((n) => `network ${n.Name}`),
  ];
}

describe('npm run demo (scripts/demo.sh)', () => {
  afterAll(async () => {
    // Removes what a failed run left; a no-op after a passing one.
    await demo(['down']);
  }, 120_000);

  it(
    'backs up the demo site, damages it, restores it and shows the data back; `down` removes it all',
    async () => {
      const run = await demo([]);
      const tail = run.out.slice(-4000);
      expect(run.code, tail).toBe(0);
      // What the newcomer reads: the snapshot listed, the damage, the data back, how to remove the stack.
      expect(run.out).toMatch(/==> the snapshot[^\n]*\n(?:.*\n)*?\d{8}T\d{6}Z-[0-9a-f]{4}.*\bok\b/);
      // One file put back alone: gone, then back (the demo checks its bytes and fails otherwise).
      expect(run.out).toMatch(
        /==> a file deleted by mistake[^\n]*\nfile: +\n(?:.*\n)*?file: +Course material: how to back up a Moodle site\.\n/,
      );
      expect(run.out).toMatch(/==> damaging the site[^\n]*\ncourses: +\nfile: +\n/);
      expect(run.out).toMatch(
        /==> after the restore[^\n]*\ncourses: +1 Welcome to Moodle\|2 Backups for beginners\|3 Restoring a site\n/,
      );
      expect(run.out).toContain('the course table and the course file are back');
      expect(run.out).toContain('npm run demo -- down');
      expect(await leftovers()).not.toEqual([]);

      const down = await demo(['down']);
      expect(down.code, down.out).toBe(0);
      expect(await leftovers()).toEqual([]);
    },
    15 * 60_000,
  );
});
