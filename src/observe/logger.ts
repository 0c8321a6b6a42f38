import { type Logger, pino } from 'pino';

export type { Logger };

/**
 * JSON logs on stderr (stdout stays free for command output such as `snapshots --json`).
 * Secrets never reach the logger: config values are redacted by key before they are logged.
 */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
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
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything, for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
