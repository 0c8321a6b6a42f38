import type { Config, QuiesceMode } from '../config/types.js';
import { LABELS } from '../docker/labels.js';
import type { ServiceContainer, Stack } from './discover.js';
import { assertScalable } from './swarm-quiesce.js';

export interface QuiesceAction {
  container: ServiceContainer;
  action: QuiesceMode;
}

export interface QuiescePlan {
  /** In stop order: dependents first (moodle before mariadb). Resume runs it backwards. */
  actions: QuiesceAction[];
  /** Why these containers: for the log. */
  selection: 'labels' | 'volume-mounts';
  warnings: string[];
}

/**
 * Which containers to stop or pause, and in which order. A pure function of the discovered stack.
 * With any stop label in the project, exactly the labelled containers are quiesced (offen's behaviour);
 * without, every running container that mounts a selected volume is — the safe default for Moodle.
 */
export function planQuiesce(stack: Stack, config: Pick<Config, 'mode' | 'stopLabel'>): QuiescePlan {
  const warnings: string[] = [];
  // Online mode stops nothing: the database is dumped in a transaction, files are read live.
  if (config.mode === 'online') return { actions: [], selection: 'volume-mounts', warnings };
  const labelled = (c: ServiceContainer) =>
    c.labels[LABELS.offenStop] === config.stopLabel || c.labels[LABELS.stop] === 'true';
  const anyLabels = stack.containers.some(labelled);
  const selected = new Set(stack.volumes.map((v) => v.name));
  const chosen = stack.containers.filter((c) => {
    if (c.state !== 'running') return false;
    if (c.labels[LABELS.stop] === 'false') return false;
    return anyLabels ? labelled(c) : c.mounts.some((m) => selected.has(m.volume));
  });
  const actions = stopOrder(chosen, warnings).map((container) => {
    const label = container.labels[LABELS.mode];
    let action: QuiesceMode = config.mode === 'pause' ? 'pause' : 'stop';
    if (label === 'stop' || label === 'pause') action = label;
    else if (label !== undefined)
      warnings.push(`${container.name}: ignoring ${LABELS.mode}="${label}" (use stop or pause)`);
    return { container, action };
  });
  // Before anything changes (maintenance mode included): a global swarm service cannot be stopped.
  assertScalable(actions);
  if (actions.some((a) => a.action === 'pause')) {
    warnings.push(
      'pause mode gives a crash-consistent copy only (InnoDB recovers on start); use stop for a clean one',
    );
  }
  return { actions, selection: anyLabels ? 'labels' : 'volume-mounts', warnings };
}

/**
 * Dependents before their dependencies. Depth-first topological sort by service name; a cycle or an
 * unknown dependency is reported and the remaining order falls back to names.
 */
export function stopOrder(containers: ServiceContainer[], warnings: string[] = []): ServiceContainer[] {
  const byService = new Map(containers.map((c) => [c.service, c]));
  const startOrder: ServiceContainer[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (c: ServiceContainer, path: string[]) => {
    const s = state.get(c.name);
    if (s === 'done') return;
    if (s === 'visiting') {
      warnings.push(`dependency cycle: ${[...path, c.service].join(' -> ')}`);
      return;
    }
    state.set(c.name, 'visiting');
    for (const dep of [...c.dependsOn].sort()) {
      const d = byService.get(dep);
      if (d) visit(d, [...path, c.service]);
    }
    state.set(c.name, 'done');
    startOrder.push(c);
  };
  for (const c of [...containers].sort((a, b) => a.name.localeCompare(b.name))) visit(c, []);
  return startOrder.reverse();
}
