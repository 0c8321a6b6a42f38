import { z } from 'zod';
import { identityProblem, recipientProblem } from './age-keys.js';
import { invalidExcludeRules } from './exclude-rules.js';

/**
 * Zod schemas for the configuration in its YAML file form: camelCase keys mirroring types.ts, every
 * object strict so a misspelt key is an error rather than a silently ignored setting. Defaults live here
 * and only here; load.ts validates defaults < file < environment through `configSchema`.
 */

const MiB = 1024 * 1024;

/** S3 rejects multipart parts below 5 MiB (except the last) and above 5 GiB. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;

/** Codec levels we accept; zstd above 19 needs --ultra windows that restores would have to match. */
export const COMPRESSION_LEVELS = { zstd: { min: 1, max: 19 }, gzip: { min: 1, max: 9 } } as const;

export const CODECS = ['zstd', 'gzip', 'none'] as const;
export const QUIESCE_MODES = ['stop', 'pause', 'online'] as const;
export const SPOOL_POLICIES = ['auto', 'always', 'never'] as const;
export const READ_PATHS = ['auto', 'docker', 'mount'] as const;
export const INCREMENTAL_POLICIES = ['auto', 'off'] as const;
export const FRAME_POLICIES = ['auto', 'on', 'off'] as const;
export const REUSE_POLICIES = ['auto', 'off'] as const;
export const CHECKSUM_MODES = ['when_supported', 'when_required'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export const NOTIFY_EVENTS = ['failure', 'success', 'stale'] as const;

const count = () => z.int().min(0);
const nonEmpty = () => z.string().min(1);
const absolutePath = () => nonEmpty().regex(/^\//, { error: 'expected an absolute path (starting with /)' });

export const retentionSchema = z.strictObject({
  keepLast: count().default(0),
  keepHourly: count().default(0),
  keepDaily: count().default(7),
  keepWeekly: count().default(4),
  keepMonthly: count().default(6),
  keepYearly: count().default(3),
  keepWithinDays: count().default(0),
  keepPreRestoreDays: count().default(14),
  sweepGraceHours: count().default(24),
});

export const localTargetSchema = z.strictObject({
  type: z.literal('local'),
  path: absolutePath().default('/archive'),
});

export const s3TargetSchema = z
  .strictObject({
    type: z.literal('s3'),
    // A '/' here is almost always "bucket/path" pasted into the bucket field.
    bucket: nonEmpty().regex(/^[^/\s]+$/, {
      error: 'expected a bucket name without "/" or spaces (put the path in the prefix)',
    }),
    // Stored without surrounding slashes so keys join as `${prefix}/${key}` without doubling.
    prefix: z
      .string()
      .default('')
      .transform((p) => p.replace(/^\/+|\/+$/g, '')),
    region: nonEmpty().default('us-east-1'),
    endpoint: z
      .string()
      .refine(isHttpUrl, { error: 'expected an http:// or https:// URL, e.g. http://minio:9000' })
      .optional(),
    // Unset: path style unless the endpoint is a cloud that serves buckets as subdomains (storage/s3-addressing.ts).
    forcePathStyle: z.boolean().optional(),
    accessKeyId: nonEmpty().optional(),
    secretAccessKey: nonEmpty().optional(),
    requestChecksumCalculation: z.enum(CHECKSUM_MODES).default('when_supported'),
    responseChecksumValidation: z.enum(CHECKSUM_MODES).default('when_supported'),
    partSize: z
      .int()
      .min(MIN_PART_SIZE)
      .max(MAX_PART_SIZE)
      .default(16 * MiB),
    queueSize: z.int().min(1).default(4),
    requestTimeoutSeconds: z.int().min(1).default(120),
  })
  .superRefine((t, ctx) => {
    // Half a key pair would silently fall back to the SDK's credential chain with the other half ignored.
    if ((t.accessKeyId === undefined) !== (t.secretAccessKey === undefined)) {
      const missing = t.accessKeyId === undefined ? 'accessKeyId' : 'secretAccessKey';
      ctx.addIssue({
        code: 'custom',
        path: [missing],
        message:
          'required when the other half of the key pair is set (or set neither to use the AWS credential chain)',
      });
    }
  });

/** age keys; each problem names the list item, never its value (identities and passphrases are secrets). */
export const encryptionSchema = z
  .strictObject({
    recipients: z.array(z.string()).default([]),
    passphrase: nonEmpty().optional(),
    identities: z.array(z.string()).default([]),
  })
  .superRefine((e, ctx) => {
    e.recipients.forEach((r, i) => {
      const problem = recipientProblem(r);
      if (problem) ctx.addIssue({ code: 'custom', path: ['recipients', i], message: problem });
    });
    e.identities.forEach((id, i) => {
      const problem = identityProblem(id);
      if (problem) ctx.addIssue({ code: 'custom', path: ['identities', i], message: problem });
    });
    if (e.passphrase !== undefined && e.recipients.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['passphrase'],
        message: 'set either recipients or a passphrase, not both (age encrypts to one or the other)',
      });
    }
  });

export const targetSchema = z.discriminatedUnion('type', [localTargetSchema, s3TargetSchema]);

export const configSchema = z
  .strictObject({
    project: nonEmpty()
      .regex(/^[a-z0-9][a-z0-9_-]*$/, {
        error: 'expected a Compose project name (lowercase letters, digits, "-" and "_")',
      })
      .optional(),
    volumes: z
      .array(nonEmpty().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, { error: 'expected a Docker volume name' }))
      .default([]),
    mode: z.enum(QUIESCE_MODES).default('stop'),
    exclude: z
      .record(
        nonEmpty().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, { error: 'expected a volume name' }),
        z.array(nonEmpty()).superRefine((rules, ctx) => {
          for (const message of invalidExcludeRules(rules)) ctx.addIssue({ code: 'custom', message });
        }),
      )
      .optional(),
    stopLabel: nonEmpty().default('true'),
    stopTimeoutSeconds: count().default(120),
    compression: z.enum(CODECS).default('zstd'),
    compressionLevel: z.int().optional(),
    spool: z.enum(SPOOL_POLICIES).default('auto'),
    spoolDir: absolutePath().default('/var/lib/moodle-backup/spool'),
    readPath: z.enum(READ_PATHS).default('auto'),
    incremental: z.enum(INCREMENTAL_POLICIES).default('auto'),
    reuseArchives: z.enum(REUSE_POLICIES).default('auto'),
    storeFrames: z.enum(FRAME_POLICIES).default('auto'),
    stateDir: absolutePath().default('/var/lib/moodle-backup'),
    helperImage: nonEmpty().optional(),
    schedule: nonEmpty().optional(),
    healthPort: z.int().min(1).max(65535).default(8080),
    healthHost: nonEmpty().default('0.0.0.0'),
    healthStaleAfterSeconds: z.int().min(1).optional(),
    webhookUrl: z.string().refine(isHttpUrl, { error: 'expected an http:// or https:// URL' }).optional(),
    notifyOn: z.array(z.enum(NOTIFY_EVENTS)).optional(),
    // prefault (not default) so the default object is itself parsed and gets its inner defaults.
    target: targetSchema.prefault({ type: 'local' }),
    encryption: encryptionSchema.optional(),
    retention: retentionSchema.prefault({}),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    logFormat: z.enum(['auto', 'json', 'human']).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.compressionLevel === undefined) return;
    if (c.compression === 'none') {
      ctx.addIssue({
        code: 'custom',
        path: ['compressionLevel'],
        message: 'has no effect with compression "none" (remove it)',
      });
      return;
    }
    const range = COMPRESSION_LEVELS[c.compression];
    if (c.compressionLevel < range.min || c.compressionLevel > range.max) {
      ctx.addIssue({
        code: 'custom',
        path: ['compressionLevel'],
        message: `expected ${range.min}–${range.max} for ${c.compression}, received ${c.compressionLevel}`,
      });
    }
  });

/** What the YAML file (and the merged file + environment input) may contain. */
export type ConfigInput = z.input<typeof configSchema>;

/** Keys each strict object accepts, for "did you mean" suggestions on unknown keys. */
export const KNOWN_KEYS = {
  root: Object.keys(configSchema.shape),
  retention: Object.keys(retentionSchema.shape),
  local: Object.keys(localTargetSchema.shape),
  s3: Object.keys(s3TargetSchema.shape),
  encryption: Object.keys(encryptionSchema.shape),
} as const;

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
