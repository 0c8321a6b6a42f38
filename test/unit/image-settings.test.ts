import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SIDECAR_ENV, SIDECAR_NODE_FLAGS } from '../../src/bench/measure.js';
import { CLI_NODE_FLAGS, imageEnv } from '../harness/cli-node.js';

const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');

describe("the tests' CLI and the bench run as the image does", () => {
  it("with every command wrapper's node flags", () => {
    const wrappers = [...dockerfile.matchAll(/exec node ((?:--\S+ )*)\/app\/dist\/cli\/main\.js/g)];
    expect(wrappers.length).toBe(2); // one loop over the verbs, moodle-backup
    for (const [, flags] of wrappers) {
      const image = (flags ?? '').trim().split(' ');
      expect(image).toContain('--expose-gc'); // common/young-gc.ts needs it
      expect(CLI_NODE_FLAGS).toEqual(image);
      expect(SIDECAR_NODE_FLAGS).toEqual(image);
    }
  });

  it("with the image's malloc settings", () => {
    const env = Object.fromEntries(
      [...dockerfile.matchAll(/\b(MALLOC_\w+)=(\S+)/g)].map((m) => [m[1] as string, m[2] as string]),
    );
    expect(Object.keys(env).sort()).toEqual(['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_']);
    expect(imageEnv({})).toEqual(env);
    expect(SIDECAR_ENV).toEqual(env);
  });
});
