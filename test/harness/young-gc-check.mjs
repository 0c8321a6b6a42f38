// Run by test/unit/common/young-gc.test.ts under the product's Node with the image's flags: 200 MB of 64 KiB
// chunks, each dead once the next arrives (as a stream's are), with collectingYoung (`on`) or without (`off`);
// prints the most memory the dead chunks held outside V8's heap at once.
import { setTimeout as sleep, setImmediate as turn } from 'node:timers/promises';

const { collectingYoung } = await import(new URL('../../dist/common/young-gc.js', import.meta.url).href);
const CHUNK = 64 * 1024;
let most = 0;
let sum = 0;
const churn = async () => {
  for (let i = 0; i < 3200; i++) {
    const chunk = Buffer.allocUnsafe(CHUNK);
    chunk[i % CHUNK] = i & 0xff;
    sum += chunk[i % CHUNK];
    // ~0.5 MB a millisecond, a fast stream's pace (an S3 restore moves ~0.3)
    if (i % 8 === 7) await sleep(1);
    else await turn();
    most = Math.max(most, process.memoryUsage().arrayBuffers);
  }
};
if (process.argv[2] === 'on') await collectingYoung(churn);
else await churn();
process.stdout.write(
  JSON.stringify({ exposed: typeof globalThis.gc === 'function', mostMb: most / 1048576, sum }),
);
