import v8 from 'node:v8';

/**
 * Dead buffers handed back promptly while a run moves bytes.
 *
 * Every chunk a stream reads, opens, decompresses or hashes is a fresh Buffer whose memory lives outside V8's
 * heap. V8 frees it only when it collects the small object that holds it, and it collects on its heap's own
 * pace plus a soft limit of 64 MB of such outside memory: on a run of small objects and large buffers that is
 * up to ~60 MB of dead buffers in RSS (docs/design.md, "Dead buffers collected young"). A minor collection of
 * the young generation (2 MB with the image's flags) frees the buffers that died young, which these are.
 * Needs node's `--expose-gc` (the image's wrappers pass it); without it, nothing changes.
 */
const EVERY_MS = 10;
/** Outside memory grown by this much since the last look's low point is worth a collection. */
const STEP = 2 * 1024 * 1024;

type MinorGc = (options: { type: 'minor' }) => void;

let active = 0;
let timer: NodeJS.Timeout | undefined;

/**
 * Runs `fn` looking every 10 ms at the memory outside V8's heap, collecting the young generation when it grew by
 * 2 MB: a run whose bytes go through zstd and tar alone (a local backup) is not slowed by collections it does
 * not need. Nested and parallel calls share one timer.
 */
export async function collectingYoung<T>(fn: () => Promise<T>): Promise<T> {
  const gc = (globalThis as { gc?: MinorGc }).gc;
  if (!gc) return fn();
  if (active++ === 0) {
    let low = external();
    timer = setInterval(() => {
      const now = external();
      if (now < low) low = now;
      else if (now - low > STEP) {
        gc({ type: 'minor' });
        low = now; // lowered by the next looks as the freed buffers are swept (concurrently)
      }
    }, EVERY_MS).unref();
  }
  try {
    return await fn();
  } finally {
    if (--active === 0) clearInterval(timer);
  }
}

/** Bytes outside V8's heap: node 22's heap statistics carry them (cheaply), older ones only memoryUsage. */
function external(): number {
  return (
    (v8.getHeapStatistics() as { external_memory?: number }).external_memory ?? process.memoryUsage().external
  );
}
