import { SidecarError } from '../common/errors.js';
import { cronProblem } from '../config/cron.js';
import { closest } from '../config/suggest.js';
import { HELPER_LABEL, LABELS } from '../docker/labels.js';
import type { ServiceContainer } from './discover.js';

/** Our label namespace: an unknown key in it is a typo, never silently ignored. */
const PREFIX = 'moodle-backup.';
const BOOLEAN_LABELS: string[] = [LABELS.stop, LABELS.moodle, LABELS.database];
const CONTAINER_MODES = ['stop', 'pause'] as const;
const SERVICE_LIST = /^\s*[a-zA-Z0-9][a-zA-Z0-9_.-]*(\s*,\s*[a-zA-Z0-9][a-zA-Z0-9_.-]*)*\s*$/;

export interface LabelProblem {
  container: string;
  label: string;
  value: string;
  problem: string;
}

/** What is wrong with one container's `moodle-backup.*` labels (values are checked, hooks are free text). */
export function labelProblems(c: Pick<ServiceContainer, 'name' | 'labels'>): LabelProblem[] {
  const known: string[] = [...Object.values(LABELS), HELPER_LABEL].filter((l) => l.startsWith(PREFIX));
  const out: LabelProblem[] = [];
  const add = (label: string, problem: string) =>
    out.push({ container: c.name, label, value: c.labels[label] ?? '', problem });
  for (const [label, value] of Object.entries(c.labels).sort(([a], [b]) => a.localeCompare(b))) {
    if (!label.startsWith(PREFIX)) continue;
    if (!known.includes(label)) {
      const guess = closest(label, known);
      add(label, `unknown label${guess ? ` (did you mean ${guess}?)` : ''}`);
    } else if (BOOLEAN_LABELS.includes(label) && value !== 'true' && value !== 'false') {
      add(label, 'expected true or false');
    } else if (label === LABELS.mode && !(CONTAINER_MODES as readonly string[]).includes(value)) {
      // `online` is a job's mode, not a way to quiesce one container.
      add(label, `expected ${CONTAINER_MODES.join(' or ')}`);
    } else if (label === LABELS.moodleDir && !value.trim().startsWith('/')) {
      add(label, "expected an absolute path: Moodle's top directory, where config.php is");
    } else if (label === LABELS.dependsOn && !SERVICE_LIST.test(value)) {
      add(label, 'expected a comma-separated list of service names');
    } else if (label === LABELS.schedule) {
      const bad = cronProblem(value);
      if (bad) add(label, `${bad} (five fields, six with seconds first, or @daily)`);
    }
  }
  return out;
}

export function describeLabelProblem(p: LabelProblem): string {
  return `container ${p.container}: label ${p.label}=${JSON.stringify(p.value)}: ${p.problem}`;
}

/**
 * Refuses a run whose stack carries a bad label, before anything is stopped: a typo in a stop or mode label
 * would otherwise quietly change what gets stopped.
 */
export function assertLabels(containers: Pick<ServiceContainer, 'name' | 'labels'>[]): void {
  const problems = containers.flatMap(labelProblems);
  if (problems.length === 0) return;
  throw new SidecarError(
    'LABEL_INVALID',
    `invalid label${problems.length > 1 ? 's' : ''}: ${problems.map(describeLabelProblem).join('; ')}`,
    'fix the label in the compose file and recreate the container (`docker compose up -d`); nothing was stopped',
  );
}
