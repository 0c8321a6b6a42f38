import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/observe/logger.js';
import { EventsWatcher } from '../../../src/schedule/watch.js';

/**
 * The watcher against an HTTP server speaking Docker's /events protocol (a stream of JSON lines), so the
 * stream can be made to drop and the daemon to refuse on cue.
 */

type Answer = 'event' | 'refuse';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  server?.close();
  server = undefined;
});

async function fakeDaemon(answers: Answer[]): Promise<{ docker: Docker; requests: string[] }> {
  const requests: string[] = [];
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const answer = answers[requests.length - 1] ?? 'refuse';
    if (answer === 'refuse') {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"message":"daemon restarting"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    const event = {
      Type: 'container',
      Action: 'create',
      Actor: { Attributes: { name: `c${requests.length}` } },
    };
    res.write(`${JSON.stringify(event)}\n`);
    // Then the stream drops, as when the daemon restarts.
    setTimeout(() => res.end(), 20);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return { docker: new Docker({ host: '127.0.0.1', port, protocol: 'http' }), requests };
}

describe('Docker events watcher', () => {
  it('re-plans after events and after reconnecting, retries with backoff, gives up after maxAttempts in a row', async () => {
    const { docker, requests } = await fakeDaemon(['event', 'refuse', 'event', 'refuse', 'refuse', 'refuse']);
    const changes: string[] = [];
    let gaveUp: unknown;
    const watcher = new EventsWatcher({
      docker,
      project: 'moodle',
      log: silentLogger(),
      onChange: (reason) => changes.push(reason),
      onGiveUp: (err) => {
        gaveUp = err;
      },
      maxAttempts: 3,
      baseDelayMs: 10,
      maxDelayMs: 40,
      debounceMs: 1,
    });
    watcher.start();
    for (let i = 0; i < 200 && gaveUp === undefined; i++) await sleep(20);
    await watcher.stop();
    // 1 ok, 1 refused, 1 ok (counts start again), then 3 refusals in a row: the 4th failure gives up.
    expect(requests).toHaveLength(6);
    expect(String(gaveUp)).toContain('failed 3 times in a row');
    const query = decodeURIComponent(requests[0] ?? '');
    expect(query).toContain('com.docker.compose.project=moodle');
    expect(query).toContain('"destroy"');
    expect(changes).toContain('create c1');
    expect(changes.some((c) => c === 'reconnected' || c === 'create c3')).toBe(true);
    await sleep(100);
    expect(requests).toHaveLength(6);
  });

  it('stop() ends a connected watcher at once', async () => {
    const { docker, requests } = await fakeDaemon(['event']);
    const watcher = new EventsWatcher({
      docker,
      project: 'p',
      log: silentLogger(),
      onChange: () => undefined,
      onGiveUp: () => undefined,
      baseDelayMs: 60_000,
    });
    watcher.start();
    for (let i = 0; i < 100 && requests.length === 0; i++) await sleep(10);
    const t0 = Date.now();
    await watcher.stop();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(requests).toHaveLength(1);
  });
});
