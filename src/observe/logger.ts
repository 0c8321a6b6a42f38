import { type Logger, pino } from 'pino';
import { humanDestination } from './human-log.js';
import { chooseHumanOutput, colourWanted, stderrStatus } from './terminal.js';

export type { Logger };

/** `auto`: human lines when stderr is a terminal, JSON lines otherwise (containers, CI, log shippers). */
export type LogFormat = 'auto' | 'json' | 'human';

/**
 * Logs on stderr (stdout stays free for command output such as `snapshots --json`): JSON lines, or human
 * lines for a person at a terminal. Secrets never reach the logger: config values are redacted by key
 * before they are logged.
 */
export function createLogger(opts: { level?: string; name?: string; format?: LogFormat } = {}): Logger {
  const human = chooseHumanOutput(opts.format);
  return pino(
    {
      name: opts.name ?? 'moodle-backup',
      level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['*.secretAccessKey', '*.password', '*.passphrase', '*.token', 'secretAccessKey', 'password'],
        censor: '[redacted]',
      },
    },
    human ? humanDestination(stderrStatus(), colourWanted()) : pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything, for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
