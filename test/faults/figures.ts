import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'vitest';

/**
 * The fault suites' figures (`crash 4/4 recovered`, …). Each suite counts its cases as they pass and writes
 * its tally here in afterAll; the global teardown prints one combined line, so the figures land in CI's log
 * whichever reporter runs.
 */
const DIR = fileURLToPath(new URL('../../.tmp/fault-figures/', import.meta.url));

export interface Tally {
  suite: string;
  /** What a passing case is called in the summary: recovered, refused, clean… */
  verb: string;
  ok: number;
  total: number;
}

export class Figures {
  ok = 0;
  total = 0;
  /** Cases registered with `it`/`each`: they count in the line whether or not they ever ran. */
  planned = 0;
  constructor(
    readonly suite: string,
    readonly verb = 'ok',
  ) {}

  /**
   * A test that is one counted case. Registered when the file is collected, so a case that never runs (its
   * suite's setup failed) still shows in the line, as failed.
   */
  it(name: string, fn: () => Promise<void>, timeoutMs?: number): void {
    this.planned++;
    it(name, () => this.count(fn), timeoutMs);
  }

  /** `it.each` with one counted case per item, registered at collection like `it`. */
  each<T extends object>(
    cases: readonly T[],
    name: string,
    fn: (c: T) => Promise<void>,
    timeoutMs?: number,
  ): void {
    this.planned += cases.length;
    it.each(cases as T[])(name, (c) => this.count(() => fn(c)), timeoutMs);
  }

  /** Runs one case; it counts as passed only when `fn` resolves. */
  private async count<T>(fn: () => Promise<T>): Promise<T> {
    this.total++;
    const r = await fn();
    this.ok++;
    return r;
  }

  /** Prints this suite's line and records it for the combined line (call in afterAll). */
  save(): void {
    // A registered case that never started is a failed one: a suite whose setup failed shows 0/N.
    const total = Math.max(this.total, this.planned);
    if (total === 0) return;
    const line = `${this.suite} ${this.ok}/${total} ${this.verb}`;
    console.log(`figures: ${line}`);
    mkdirSync(DIR, { recursive: true });
    const t: Tally = { suite: this.suite, verb: this.verb, ok: this.ok, total };
    writeFileSync(
      join(DIR, `${this.suite.replace(/\W+/g, '-')}-${process.pid}-${Date.now()}.json`),
      JSON.stringify(t),
    );
  }
}

/** Called by the global setup: a run starts with no figures. */
export function resetFigures(): void {
  rmSync(DIR, { recursive: true, force: true });
}

/** Called by the global teardown: one line with every suite's figures, suites of the same name added up. */
export function summariseFigures(): string | undefined {
  let files: string[];
  try {
    files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
  } catch {
    return undefined;
  }
  const bySuite = new Map<string, Tally>();
  for (const f of files.sort()) {
    const t = JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Tally;
    const acc = bySuite.get(t.suite);
    if (acc) {
      acc.ok += t.ok;
      acc.total += t.total;
    } else bySuite.set(t.suite, { ...t });
  }
  if (bySuite.size === 0) return undefined;
  const order = ['crash', 's3 faults', 'local faults', 'hostile', 'secrets'];
  const rank = (s: string) => (order.indexOf(s) < 0 ? order.length : order.indexOf(s));
  return [...bySuite.values()]
    .sort((a, b) => rank(a.suite) - rank(b.suite))
    .map((t) => `${t.suite} ${t.ok}/${t.total} ${t.verb}`)
    .join(' · ');
}
