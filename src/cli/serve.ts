import type { Command } from 'commander';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'run the scheduled jobs (BACKUP_CRON_EXPRESSION, YAML jobs, schedule labels) and serve /healthz and /metrics until stopped',
    )
    .action(async () => {
      const { openContext } = await import('./context.js');
      // openContext resumes whatever an interrupted run left stopped before anything else happens.
      const ctx = await openContext({ scope: 'all' });
      const { BackendPool } = await import('../schedule/runner.js');
      const { startServe } = await import('../schedule/serve.js');
      const backends = new BackendPool(ctx.log);
      try {
        const serving = await startServe({ ...ctx, backends });
        await aborted(ctx.signal);
        ctx.log.info(
          { step: 'shutdown' },
          'stopping: waiting for a running backup to abort and resume the stack',
        );
        await serving.stop();
        ctx.log.info({ step: 'shutdown' }, 'stopped');
      } finally {
        backends.close();
        await ctx.close();
      }
    });
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
