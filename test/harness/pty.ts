import { spawn } from 'node:child_process';
import { CLI, type CliResult, collectRun } from './cli.js';
import { CLI_NODE, CLI_NODE_FLAGS, imageEnv } from './cli-node.js';

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs the built CLI on a pseudo-terminal, as `docker exec -it sidecar …` does: util-linux `script` gives it
 * a terminal of `columns` × 24 for stdin, stdout and stderr. What the terminal showed comes back in `stdout`
 * (both streams, as a person sees them; `\r\n` as the terminal sends it).
 */
export function runInTerminal(
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { timeoutMs?: number; columns?: number } = {},
): Promise<CliResult> {
  const command = [
    `stty cols ${opts.columns ?? 80} rows 24;`,
    'exec',
    quote(CLI_NODE),
    ...CLI_NODE_FLAGS,
    quote(CLI),
    ...args.map(quote),
  ].join(' ');
  // -e: script exits with the command's status.
  const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
    env: imageEnv(env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return collectRun(child, opts.timeoutMs);
}

/**
 * The screen's lines as separate writes: split at line ends and at carriage returns (each redraw of a
 * progress line starts with one), trailing padding removed.
 */
export function terminalLines(out: string): string[] {
  return out
    .split(/\r?\n|\r/)
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
}
