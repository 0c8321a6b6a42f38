import { createRequire } from 'node:module';
import { formatBytes, formatDuration } from './format.js';
import type { StatusLine } from './terminal.js';

/** The fields worth a person's attention, in this order; the rest stays in the JSON format. */
const SHOWN: Record<string, (v: unknown) => string> = {
  volume: String,
  container: String,
  snapshot: String,
  file: String,
  rawBytes: (v) => formatBytes(Number(v)),
  storedBytes: (v) => `${formatBytes(Number(v))} stored`,
  ms: (v) => formatDuration(Number(v)),
  code: String,
};

type Pretty = (line: string) => string;
type PrettyFactory = (opts: Record<string, unknown>) => Pretty;

/**
 * A pino destination that writes human lines (time, coloured level, message, the few fields above) through
 * the terminal's status line. pino-pretty is loaded only here, on a terminal: JSON runs never pay for it.
 */
export function humanDestination(status: StatusLine, colour: boolean): { write(line: string): void } {
  const require = createRequire(import.meta.url);
  const { prettyFactory } = require('pino-pretty') as { prettyFactory: PrettyFactory };
  const pretty = prettyFactory({
    colorize: colour,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname,name',
    hideObject: true,
    messageFormat: (log: Record<string, unknown>, messageKey: string) => {
      const msg = String(log[messageKey] ?? '');
      const extra = Object.entries(SHOWN)
        .filter(([k]) => log[k] !== undefined && !msg.includes(String(log[k])))
        .map(([k, f]) => f(log[k]));
      const err = log.err as { message?: string } | undefined;
      if (err?.message && !msg.includes(err.message)) extra.push(err.message);
      return extra.length ? `${msg}  (${extra.join(', ')})` : msg;
    },
  });
  return { write: (line: string) => status.print(pretty(line)) };
}
