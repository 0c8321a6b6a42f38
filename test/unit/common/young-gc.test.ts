import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI_NODE, CLI_NODE_FLAGS } from '../../harness/cli-node.js';

/** The most MB that 200 MB of dead 64 KiB chunks held at once, under the product's Node and flags. */
function deadChunksMb(mode: 'on' | 'off'): { exposed: boolean; mostMb: number } {
  const script = fileURLToPath(new URL('../../harness/young-gc-check.mjs', import.meta.url));
  return JSON.parse(execFileSync(CLI_NODE, [...CLI_NODE_FLAGS, script, mode], { encoding: 'utf8' }));
}

describe('collectingYoung', () => {
  it("keeps a stream's dead chunks to a few MB where V8 alone lets them pile up", () => {
    const on = deadChunksMb('on');
    const off = deadChunksMb('off');
    expect(on.exposed).toBe(true); // the image's flags expose gc, or collectingYoung does nothing
    expect(on.mostMb).toBeLessThan(16);
    // Without it the same chunks reach ~32 MB (V8's own pace): what the image's S3 restores paid.
    expect(off.mostMb).toBeGreaterThan(on.mostMb * 2);
  });
});
