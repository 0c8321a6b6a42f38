import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError, isSidecarError, SidecarError } from '../common/errors.js';
import type { Logger } from './logger.js';
import type { BackupMetrics } from './metrics.js';

export interface FailureInfo {
  time: string;
  code: string;
  message: string;
}

export interface HealthReport {
  /** down: an interrupted run left the stack stopped and it is not running again yet (jobs-health.ts). */
  status: 'ok' | 'failing' | 'stale' | 'down';
  /** Why the sidecar is unhealthy; absent when ok. */
  reason?: string;
  lastSuccess: string | null;
  lastSnapshot: string | null;
  lastFailure: FailureInfo | null;
  nextRun: string | null;
  /** When the last success (or the start, without one) turns stale; null = staleness not checked. */
  staleAt: string | null;
}

export interface HealthOptions {
  /** The moment after which a success at `ref` is overdue; null (or no function) = never stale. */
  staleDeadline?: (ref: Date) => Date | null;
  nextRun?: () => Date | null;
  now?: () => Date;
}

/**
 * What /healthz answers, kept in memory by `serve`: unhealthy while the newest run failed, or when no run has
 * succeeded for longer than the schedule allows. Without a success yet, staleness counts from the start.
 */
export class HealthState {
  readonly startedAt: Date;
  private lastSuccess: { time: Date; snapshot: string } | null = null;
  private lastFailure: { time: Date; info: FailureInfo } | null = null;

  constructor(private readonly opts: HealthOptions = {}) {
    this.startedAt = this.now();
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** Records a success; an older one (e.g. read back from the catalog) never replaces a newer one. */
  recordSuccess(time: Date, snapshot: string): void {
    if (this.lastSuccess && this.lastSuccess.time >= time) return;
    this.lastSuccess = { time, snapshot };
  }

  recordFailure(err: unknown, time = this.now()): void {
    const code = isSidecarError(err) ? err.code : 'UNEXPECTED';
    this.lastFailure = { time, info: { time: time.toISOString(), code, message: describeError(err) } };
  }

  get lastSuccessTime(): Date | null {
    return this.lastSuccess?.time ?? null;
  }

  report(): HealthReport {
    const now = this.now();
    const next = this.opts.nextRun?.() ?? null;
    const ref = this.lastSuccess?.time ?? this.startedAt;
    const staleAt = this.opts.staleDeadline?.(ref) ?? null;
    const base: HealthReport = {
      status: 'ok',
      lastSuccess: this.lastSuccess?.time.toISOString() ?? null,
      lastSnapshot: this.lastSuccess?.snapshot ?? null,
      lastFailure: this.lastFailure?.info ?? null,
      nextRun: next?.toISOString() ?? null,
      staleAt: staleAt?.toISOString() ?? null,
    };
    const failure = this.lastFailure;
    if (failure && (!this.lastSuccess || failure.time > this.lastSuccess.time)) {
      const { info } = failure;
      return {
        ...base,
        status: 'failing',
        reason: `last run failed at ${info.time}: [${info.code}] ${info.message}`,
      };
    }
    if (staleAt && now > staleAt) {
      const since = this.lastSuccess
        ? `since ${ref.toISOString()}`
        : `since the sidecar started at ${ref.toISOString()}`;
      return {
        ...base,
        status: 'stale',
        reason: `no successful backup ${since}; one was due by ${staleAt.toISOString()}`,
      };
    }
    return base;
  }
}

/** What /healthz answers from: one HealthState, or several jobs' combined (observe/jobs-health.ts). */
export interface HealthSource {
  report(): HealthReport;
}

export interface HealthServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

/** GET /healthz (200 or 503, JSON) and GET /metrics (Prometheus text) for Docker healthchecks and scrapers. */
export async function startHealthServer(opts: {
  host: string;
  port: number;
  health: HealthSource;
  metrics: BackupMetrics;
  log: Logger;
}): Promise<HealthServer> {
  const { health, metrics, log } = opts;
  const server = createServer((req, res) => {
    handle(req, res, health, metrics).catch((err: unknown) => {
      log.error({ step: 'health', err }, `health server: ${describeError(err)}`);
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // Probes are short and frequent: idle keep-alive sockets would only delay shutdown.
  server.keepAliveTimeout = 2_000;
  await listen(server, opts.host, opts.port);
  const port = (server.address() as AddressInfo).port;
  log.info(
    { step: 'health', host: opts.host, port },
    `health and metrics on http://${opts.host}:${port}/healthz`,
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new SidecarError(
          'CONFIG_INVALID',
          `health server cannot listen on ${host}:${port}: ${err.code ?? err.message}`,
          'set BACKUP_HEALTH_PORT to a free port (and BACKUP_HEALTH_HOST to a local address)',
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  health: HealthSource,
  metrics: BackupMetrics,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  if (path === '/healthz') {
    const report = health.report();
    send(res, report.status === 'ok' ? 200 : 503, 'application/json', `${JSON.stringify(report)}\n`);
  } else if (path === '/metrics') {
    send(res, 200, metrics.contentType, await metrics.render());
  } else {
    send(res, 404, 'text/plain; charset=utf-8', 'not found: try /healthz or /metrics\n');
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
