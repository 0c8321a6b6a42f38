/**
 * The one typed configuration every part of the sidecar reads. Built by config/load.ts from defaults,
 * an optional YAML file and the environment (env wins), validated before anything touches Docker.
 */

export type Codec = 'zstd' | 'gzip' | 'none';
export type QuiesceMode = 'stop' | 'pause';
/** How a run gets a consistent copy: stop or pause the stack, or `online` (a mariadb-dump, nothing stopped). */
export type BackupMode = QuiesceMode | 'online';
export type SpoolPolicy = 'auto' | 'always' | 'never';
/** How volume data is read and written: a directory the sidecar can see (`mount`) or Docker's archive API. */
export type ReadPath = 'auto' | 'docker' | 'mount';
/** Webhook events; 'failure' is always sent. */
export type NotifyEvent = 'failure' | 'success' | 'stale';

export interface LocalTarget {
  type: 'local';
  /** Directory that holds the snapshots (offen: BACKUP_ARCHIVE, default /archive). */
  path: string;
}

export interface S3Target {
  type: 's3';
  bucket: string;
  /** Key prefix without leading or trailing slash; '' for the bucket root. */
  prefix: string;
  region: string;
  /** Full URL incl. protocol, e.g. http://minio:9000; undefined for AWS. */
  endpoint?: string;
  /** true/false forces the addressing; undefined: offen's rule (storage/s3-addressing.ts). */
  forcePathStyle?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** 'when_required' suits S3-compatible servers that do not understand the newer AWS checksums. */
  requestChecksumCalculation: 'when_supported' | 'when_required';
  responseChecksumValidation: 'when_supported' | 'when_required';
  /** Multipart part size in bytes. */
  partSize: number;
  /** Parallel part uploads. */
  queueSize: number;
  /** A request with no traffic for this long is abandoned (and retried): a stalled server cannot hang a run. */
  requestTimeoutSeconds?: number;
}

export type Target = LocalTarget | S3Target;

/** age encryption at rest (archive/encryption.ts). Secrets: passphrase and identities are never logged. */
export interface EncryptionConfig {
  /** age recipients (age1…) to encrypt backups to. */
  recipients: string[];
  /** scrypt passphrase: encrypts backups (instead of recipients) and decrypts passphrase snapshots. */
  passphrase?: string;
  /** age identities (AGE-SECRET-KEY-1…) that decrypt snapshots on restore and verify. */
  identities: string[];
}

export interface RetentionPolicy {
  keepLast: number;
  keepHourly: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  keepYearly: number;
  /** offen's BACKUP_RETENTION_DAYS: also keep everything younger than this many days (0 = off). */
  keepWithinDays: number;
  /** pre-restore safety snapshots younger than this are never pruned. */
  keepPreRestoreDays: number;
  /** Manifest-less leftovers older than this are swept. */
  sweepGraceHours: number;
}

export interface Config {
  /** Compose project to back up; default: the sidecar's own container's com.docker.compose.project label. */
  project?: string;
  /** Short volume names (e.g. moodledata_data); empty = every named volume of the project but the sidecar's own. */
  volumes: string[];
  mode: BackupMode;
  /**
   * Per short volume name, paths to leave out of its archive (archive/tar-exclude.ts has the syntax). Replaces
   * the label `moodle-backup.exclude` and the Moodle defaults for that volume; [] excludes nothing.
   */
  exclude?: Record<string, string[]>;
  /** Value of the stop label that selects containers (offen: BACKUP_STOP_DURING_BACKUP_LABEL, default 'true'). */
  stopLabel: string;
  /** Seconds Docker waits for a clean stop before SIGKILL (MariaDB needs time to flush). */
  stopTimeoutSeconds: number;
  compression: Codec;
  /** Codec level; undefined = codec default (zstd 3, gzip 6). */
  compressionLevel?: number;
  spool: SpoolPolicy;
  /** Where compressed archives are spooled when the target is slower than reading. */
  spoolDir: string;
  /** auto: the volume's directory when the sidecar can see it (volume/mount-dir.ts), else Docker's archive API. */
  readPath: ReadPath;
  /**
   * auto: a volume with a Moodle `filedir/` keeps its blobs in the target's content-addressed store
   * (store/, docs/format.md); off: every volume is a full archive in each snapshot.
   */
  incremental: 'auto' | 'off';
  /**
   * Packs as independent zstd frames (store/frames.ts), so a partial restore reads only the frames it needs.
   * auto: when the target is not a local directory (S3: the download is what frames save; locally a whole pack
   * decompresses faster than frames cost the backup); on / off: always / never. zstd packs (age-encrypted
   * ones too), on a Node with zstd in zlib. Undefined = auto.
   */
  storeFrames?: 'auto' | 'on' | 'off';
  /**
   * auto: a file volume whose metadata listing is unchanged since the newest snapshot reuses that snapshot's
   * archive (a hard link, an S3 server-side copy) instead of compressing it again; off: always read.
   * Undefined = auto.
   */
  reuseArchives?: 'auto' | 'off';
  /** Persistent directory for the state file (what was stopped) and the run lock. */
  stateDir: string;
  /** Image for helper containers that mount volumes; default: the sidecar's own image. */
  helperImage?: string;
  /**
   * Cron expression for recurring runs (offen: BACKUP_CRON_EXPRESSION). Stored as given; the scheduler
   * validates it. undefined = not configured.
   */
  schedule?: string;
  /** Port of `serve`'s health and metrics HTTP server (schema default 8080). */
  healthPort?: number;
  /** Address that server binds (schema default 0.0.0.0: reachable from the compose network). */
  healthHost?: string;
  /** /healthz reports stale when the last success is older; undefined = derived from the schedule. */
  healthStaleAfterSeconds?: number;
  /** Notification webhook. A secret: such URLs usually embed a token; never logged. */
  webhookUrl?: string;
  /** Events posted to the webhook besides 'failure'; undefined = failures only. */
  notifyOn?: NotifyEvent[];
  target: Target;
  /** undefined = archives are stored unencrypted. */
  encryption?: EncryptionConfig;
  retention: RetentionPolicy;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  /** undefined/auto: human lines when stderr is a terminal, else JSON lines; `--json` makes them JSON too. */
  logFormat?: 'auto' | 'json' | 'human';
}
