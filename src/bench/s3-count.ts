import { createServer, request } from 'node:http';
import { freePort } from './s3rver.js';

/**
 * A counting HTTP proxy on 127.0.0.1 in front of the bench's S3 server: how many requests (by method) a
 * backup sends, which is what an S3 bill counts. The bytes pass through unchanged.
 */
export interface CountingProxy {
  port: number;
  counts(): Record<string, number>;
  /** Bytes of the responses' bodies: what a run downloaded. */
  received(): number;
  reset(): void;
  stop(): Promise<void>;
}

export async function startCountingProxy(targetPort: number): Promise<CountingProxy> {
  let counts: Record<string, number> = {};
  let received = 0;
  const server = createServer((req, res) => {
    const m = req.method ?? 'GET';
    counts[m] = (counts[m] ?? 0) + 1;
    const up = request(
      { host: '127.0.0.1', port: targetPort, method: m, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.on('data', (d: Buffer) => {
          received += d.length;
        });
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    counts: () => ({ ...counts }),
    received: () => received,
    reset: () => {
      counts = {};
      received = 0;
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
