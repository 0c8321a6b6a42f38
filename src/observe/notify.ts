import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Manifest } from '../archive/manifest.js';
import { isSidecarError } from '../common/errors.js';
import { TOOL } from '../common/version.js';
import type { NotifyEvent } from '../config/types.js';
import type { Logger } from './logger.js';

/** The JSON body posted to BACKUP_WEBHOOK_URL (docs/configuration.md documents it). */
export interface NotifyPayload {
  event: NotifyEvent;
  project: string;
  /** The job concerned, when the sidecar runs several (YAML `jobs:` or schedule labels). */
  job?: string;
  snapshot?: string;
  /** One line a human can act on: what happened and where to look. */
  message: string;
  error?: { code: string; message: string };
  hint: string;
  /** Success only: what the snapshot lacks (taken without maintenance mode, without Moodle's excludes, …). */
  warnings?: string[];
  host: string;
  time: string;
}

export interface NotifierOptions {
  /** undefined = notifications off. Secret: never logged, not even its host. */
  url?: string;
  /** Events to send besides 'failure', which is always sent. */
  events?: NotifyEvent[];
  project: string;
  /** How a user reaches the logs, e.g. `docker logs moodle-backup-1`. */
  logsCommand: string;
  log: Logger;
  /** Retry tuning (tests); defaults: 3 attempts, 1 s then 2 s apart, 10 s each, 30 s in all. */
  attempts?: number;
  baseDelayMs?: number;
  attemptTimeoutMs?: number;
  totalTimeoutMs?: number;
}

/** HTTP statuses worth another try: the receiver is overloaded or briefly down. */
const RETRY_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * Posts JSON events to one webhook. Delivery is best effort by design: a failing receiver must never fail
 * or delay a backup beyond a bounded time, so every problem is logged and swallowed.
 */
export class Notifier {
  private readonly events: Set<NotifyEvent>;

  constructor(private readonly opts: NotifierOptions) {
    this.events = new Set<NotifyEvent>(['failure', ...(opts.events ?? [])]);
  }

  enabled(event: NotifyEvent): boolean {
    return this.opts.url !== undefined && this.events.has(event);
  }

  failure(err: unknown, snapshot?: string, job?: string): Promise<boolean> {
    const code = isSidecarError(err) ? err.code : 'UNEXPECTED';
    const text = err instanceof Error ? err.message : String(err);
    return this.send({
      event: 'failure',
      ...(snapshot ? { snapshot } : {}),
      ...(job ? { job } : {}),
      message: `backup${job ? ` job ${job}` : ''} of project ${this.opts.project} failed: ${text} — see \`${this.opts.logsCommand}\``,
      error: { code, message: text },
      hint: (isSidecarError(err) && err.hint) || `the full log is in \`${this.opts.logsCommand}\``,
    });
  }

  success(manifest: Manifest, job?: string): Promise<boolean> {
    const stored = manifest.volumes.reduce((a, v) => a + v.storedBytes, 0);
    const site = manifest.site;
    const lacks = [
      ...(site && !site.maintenance ? ['WITHOUT maintenance mode'] : []),
      ...(site && !site.moodleExcludes && !site.datarootVolume ? ["WITHOUT Moodle's excludes"] : []),
    ];
    // Moodle files whose content is not their name: the live site has corruption a person must look at.
    const corrupt = manifest.volumes.flatMap((v) =>
      (v.blobs?.mismatches ?? []).map(
        (m) => `${v.name}: ${m.path} is corrupt (its content has SHA-1 ${m.actual})`,
      ),
    );
    const warnings = [...(site?.warnings ?? []), ...corrupt];
    return this.send({
      event: 'success',
      snapshot: manifest.id,
      ...(job ? { job } : {}),
      ...(warnings.length ? { warnings } : {}),
      message:
        `backup${job ? ` job ${job}` : ''} of project ${this.opts.project} succeeded: snapshot ${manifest.id}, ` +
        `${manifest.volumes.length} volume(s), ${stored} bytes stored, ` +
        `downtime ${(manifest.timings.downtimeMs / 1000).toFixed(1)} s` +
        (lacks.length ? `; taken ${lacks.join(' and ')}${site?.moodle ? '' : ' (Moodle not found)'}` : ''),
      hint: 'list snapshots with `moodle-backup snapshots` inside the sidecar',
    });
  }

  stale(reason: string, job?: string): Promise<boolean> {
    return this.send({
      event: 'stale',
      ...(job ? { job } : {}),
      message: `backups${job ? ` of job ${job}` : ''} of project ${this.opts.project} are overdue: ${reason} — see \`${this.opts.logsCommand}\``,
      hint: 'check that the sidecar runs `serve`, its BACKUP_CRON_EXPRESSION, and its log',
    });
  }

  /** Resolves true when the receiver accepted the event (2xx), false otherwise; never rejects. */
  async send(parts: Omit<NotifyPayload, 'project' | 'host' | 'time'>): Promise<boolean> {
    const { url, log } = this.opts;
    if (url === undefined || !this.events.has(parts.event)) return false;
    const payload: NotifyPayload = {
      ...parts,
      project: this.opts.project,
      host: hostname(),
      time: new Date().toISOString(),
    };
    const body = JSON.stringify(payload);
    const attempts = this.opts.attempts ?? 3;
    const deadline = Date.now() + (this.opts.totalTimeoutMs ?? 30_000);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const outcome = await post(url, body, Math.min(this.opts.attemptTimeoutMs ?? 10_000, left));
      if (outcome.ok) {
        log.info({ step: 'notify', event: parts.event, attempt }, `webhook notified (${parts.event})`);
        return true;
      }
      log.warn(
        { step: 'notify', event: parts.event, attempt, attempts, problem: outcome.problem },
        `webhook notification failed (attempt ${attempt}/${attempts}): ${outcome.problem}`,
      );
      if (!outcome.retry) break;
      const delay = (this.opts.baseDelayMs ?? 1_000) * 2 ** (attempt - 1);
      if (attempt < attempts && Date.now() + delay < deadline) await sleep(delay);
    }
    log.error({ step: 'notify', event: parts.event }, `giving up on the ${parts.event} notification`);
    return false;
  }
}

type Outcome = { ok: true } | { ok: false; retry: boolean; problem: string };

async function post(url: string, body: string, timeoutMs: number): Promise<Outcome> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': `${TOOL.name}/${TOOL.version}` },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Drain the body so the connection is released.
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return { ok: true };
    return { ok: false, retry: RETRY_STATUS.has(res.status), problem: `HTTP ${res.status}` };
  } catch (err) {
    return { ok: false, retry: true, problem: describeFetchError(err, timeoutMs) };
  }
}

/** Only codes, never messages: undici's messages may quote the URL, which is a secret. */
function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; cause?: { code?: unknown; name?: unknown } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code ?? e?.cause?.name;
  return typeof code === 'string' ? `request failed (${code})` : 'request failed';
}
