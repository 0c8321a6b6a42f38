import type Docker from 'dockerode';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { assertDockerAvailable, createDocker } from '../docker/client.js';
import { recoverInterrupted } from '../docker/recover.js';
import { StateStore } from '../docker/state.js';
import { SidecarError } from '../errors.js';
import { createLogger, type Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';
import { createBackend } from '../storage/index.js';

export interface RunContext {
  config: Config;
  log: Logger;
  docker: Docker;
  backend: Backend & { close?: () => void };
  /** Aborted on the first SIGTERM/SIGINT; a second signal exits at once. */
  signal: AbortSignal;
  close(): Promise<void>;
}

/**
 * Everything a command needs, in the order that keeps the promise "nothing is touched before the config is
 * valid": config → logger → Docker reachable → resume what an interrupted run left stopped → backend.
 */
export async function openContext(opts: { needsDocker?: boolean } = {}): Promise<RunContext> {
  const config = await loadConfig();
  const log = createLogger({ level: config.logLevel });
  const docker = createDocker();
  if (opts.needsDocker !== false) {
    await assertDockerAvailable(docker);
    await recoverInterrupted(docker, new StateStore(config.stateDir), log);
  }
  const backend = createBackend(config.target, {
    log: (msg: string, fields?: Record<string, unknown>) => log.warn({ step: 'storage', ...fields }, msg),
  }) as Backend & { close?: () => void };
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(130);
    log.warn({ signal: sig }, `${sig} received: stopping, the stack will be resumed`);
    ac.abort(new SidecarError('INTERRUPTED', `interrupted by ${sig}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    config,
    log,
    docker,
    backend,
    signal: ac.signal,
    async close() {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      backend.close?.();
    },
  };
}

export { withRunLock } from '../schedule/lock.js';
