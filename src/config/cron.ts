import { Cron } from 'croner';

/** What to write instead, for every message about a bad cron expression. */
export const CRON_HINT =
  'use five fields (minute hour day month weekday, e.g. "0 2 * * *"), six with seconds first, or @daily';

/**
 * Why `expr` cannot be used as a schedule, or undefined when it can. Shared by the config loader (YAML
 * jobs), the label reader and `serve`, so every place rejects the same expressions with the same words.
 */
export function cronProblem(expr: string): string | undefined {
  let cron: Cron;
  try {
    cron = new Cron(expr, { paused: true });
  } catch (err) {
    return `is not a cron expression: ${(err as Error).message}`;
  }
  const next = cron.nextRun();
  cron.stop();
  return next === null ? 'never fires' : undefined;
}
