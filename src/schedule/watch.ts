import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { describeError } from '../common/errors.js';
import type { Logger } from '../observe/logger.js';

/** Container events that can change labels or the set of containers (Compose recreates to change labels). */
export const WATCHED_ACTIONS = ['create', 'destroy', 'rename', 'update'] as const;

export interface WatchOptions {
  docker: Docker;
  project: string;
  log: Logger;
  /** Called (debounced) after relevant events, and after every reconnect (events may have been missed). */
  onChange: (reason: string) => void;
  /** Called once when reconnecting failed `maxAttempts` times in a row; the watcher then stops. */
  onGiveUp: (err: unknown) => void;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  debounceMs?: number;
}

type EventStream = NodeJS.ReadableStream & { destroy(err?: Error): void };

/**
 * Follows Docker's event stream for the project's containers. When the stream drops (daemon restart, socket
 * hiccup) it reconnects with exponential backoff, at most `maxAttempts` times in a row; a connection that
 * delivered events resets the count.
 */
export class EventsWatcher {
  private stream: EventStream | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private readonly wake = new AbortController();

  constructor(private readonly opts: WatchOptions) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.abort();
    if (this.debounce) clearTimeout(this.debounce);
    this.stream?.destroy();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { log } = this.opts;
    const maxAttempts = this.opts.maxAttempts ?? 10;
    let failures = 0;
    let connectedBefore = false;
    while (!this.stopped) {
      let healthy = false;
      const t0 = Date.now();
      try {
        const stream = await this.connect();
        if (connectedBefore) {
          log.info({ step: 'watch', project: this.opts.project }, 'Docker events: reconnected');
          // Whatever changed while disconnected was not seen: plan again from scratch.
          this.changed('reconnected');
        }
        connectedBefore = true;
        // A connection that delivered events or stayed up a while worked: the next drop starts afresh.
        healthy = (await this.consume(stream)) || Date.now() - t0 > 10_000;
      } catch (err) {
        if (this.stopped) return;
        log.warn({ step: 'watch', err: describeError(err) }, `Docker events: ${describeError(err)}`);
      }
      if (this.stopped) return;
      failures = healthy ? 1 : failures + 1;
      if (failures > maxAttempts) {
        const err = new Error(`the Docker event stream failed ${maxAttempts} times in a row`);
        log.error(
          { step: 'watch' },
          `Docker events: giving up (${err.message}); labels are read again only at each run`,
        );
        this.opts.onGiveUp(err);
        return;
      }
      const delay = Math.min(
        (this.opts.baseDelayMs ?? 1_000) * 2 ** (failures - 1),
        this.opts.maxDelayMs ?? 30_000,
      );
      log.warn(
        { step: 'watch', attempt: failures, delayMs: delay },
        `Docker events: stream ended, reconnecting in ${delay} ms`,
      );
      await sleep(delay, undefined, { signal: this.wake.signal }).catch(() => undefined);
    }
  }

  private async connect(): Promise<EventStream> {
    const stream = (await this.opts.docker.getEvents({
      filters: {
        type: ['container'],
        event: [...WATCHED_ACTIONS],
        label: [`com.docker.compose.project=${this.opts.project}`],
      },
    })) as unknown as EventStream;
    this.stream = stream;
    if (this.stopped) stream.destroy();
    return stream;
  }

  /** Resolves when the stream ends; true when it delivered at least one event (a working connection). */
  private consume(stream: EventStream): Promise<boolean> {
    return new Promise((resolve) => {
      let buf = '';
      let seen = false;
      const done = () => resolve(seen);
      stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          seen = true;
          try {
            const e = JSON.parse(line) as {
              Action?: string;
              Actor?: { Attributes?: Record<string, string> };
            };
            const name = e.Actor?.Attributes?.name ?? '?';
            this.changed(`${e.Action ?? 'event'} ${name}`);
          } catch {
            this.changed('unreadable event');
          }
        }
      });
      stream.once('end', done);
      stream.once('close', done);
      stream.once('error', done);
    });
  }

  /** Compose recreates in several steps (destroy, create, start): one plan after the burst. */
  private changed(reason: string): void {
    if (this.stopped) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      if (!this.stopped) this.opts.onChange(reason);
    }, this.opts.debounceMs ?? 750);
  }
}
