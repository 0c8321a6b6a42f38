import type { HealthReport, HealthSource, HealthState } from './health.js';

export interface JobsHealthReport extends HealthReport {
  /** Each job's own report, when there are several. */
  jobs?: Record<string, HealthReport>;
}

/**
 * /healthz over several jobs: unhealthy when any job is (failing before stale), with the job named in the
 * reason. With one job the report is exactly that job's, so single-job setups see no difference.
 */
export class JobsHealth implements HealthSource {
  private readonly states = new Map<string, HealthState>();
  /** Why the stack is down after an interrupted run, until it runs again (schedule/orphan-watch.ts). */
  private down: string | null = null;

  constructor(private readonly idle: HealthState) {}

  get(name: string): HealthState | undefined {
    return this.states.get(name);
  }

  set(name: string, state: HealthState): void {
    this.states.set(name, state);
  }

  delete(name: string): void {
    this.states.delete(name);
  }

  names(): string[] {
    return [...this.states.keys()];
  }

  /** A stack stopped by an interrupted run outranks every job's state: the site is down. null: it is not. */
  setStackDown(reason: string | null): void {
    this.down = reason;
  }

  report(): JobsHealthReport {
    const r = this.jobsReport();
    return this.down ? { ...r, status: 'down', reason: this.down } : r;
  }

  private jobsReport(): JobsHealthReport {
    const entries = [...this.states.entries()].map(([name, s]) => ({ name, r: s.report() }));
    if (entries.length === 0) return this.idle.report();
    if (entries.length === 1) return (entries[0] as { r: HealthReport }).r;
    const reports = entries.map((e) => e.r);
    const newest = (pick: (r: HealthReport) => string | null, dir: 1 | -1) =>
      reports
        .map(pick)
        .filter((v): v is string => v !== null)
        .sort((a, b) => dir * (Date.parse(b) - Date.parse(a)))[0] ?? null;
    const lastSuccess = newest((r) => r.lastSuccess, 1);
    const out: JobsHealthReport = {
      status: 'ok',
      lastSuccess,
      lastSnapshot: reports.find((r) => r.lastSuccess === lastSuccess)?.lastSnapshot ?? null,
      lastFailure:
        reports
          .map((r) => r.lastFailure)
          .filter((f) => f !== null)
          .sort((a, b) => Date.parse(b.time) - Date.parse(a.time))[0] ?? null,
      nextRun: newest((r) => r.nextRun, -1),
      staleAt: newest((r) => r.staleAt, -1),
      jobs: Object.fromEntries(entries.map((e) => [e.name, e.r])),
    };
    for (const status of ['failing', 'stale'] as const) {
      const bad = entries.filter((e) => e.r.status === status);
      if (bad.length > 0) {
        return { ...out, status, reason: bad.map((e) => `job ${e.name}: ${e.r.reason}`).join('; ') };
      }
    }
    return out;
  }
}
