/** What an offen/docker-volume-backup user set that this tool does not do, and what to do instead. */

export const ONE_TARGET =
  'moodle-backup writes to one target: a local directory (BACKUP_ARCHIVE) or S3 (AWS_S3_BUCKET_NAME)';
const NO_NOTIFY =
  'shoutrrr URLs and e-mail are not built in: set BACKUP_WEBHOOK_URL for JSON webhooks, or alert on the exit status or on the error code in the JSON logs';
const NO_ENCRYPT =
  'GPG is not supported: encrypt with age instead (BACKUP_AGE_RECIPIENTS or BACKUP_AGE_PASSPHRASE)';
const NO_HOOKS = 'exec labels are not supported';

/**
 * offen settings that have no equivalent here, with what to do instead. Listed by exact name (an offen
 * `_FILE` variant is matched too); a prefix match would catch unrelated variables such as SSH_AUTH_SOCK.
 */
export const UNSUPPORTED_OFFEN_VARS: Readonly<Record<string, string>> = {
  BACKUP_SOURCES:
    'volumes are read through Docker, not from mounts under /backup: list them in BACKUP_VOLUMES',
  BACKUP_FILENAME: 'snapshot names are chosen by moodle-backup so that retention and restore can find them',
  BACKUP_FILENAME_EXPAND: 'snapshot names are chosen by moodle-backup',
  BACKUP_LATEST_SYMLINK: 'snapshot names are chosen by moodle-backup: no "latest" link is kept',
  BACKUP_PRUNING_PREFIX: 'give moodle-backup a location of its own with AWS_S3_PATH or BACKUP_ARCHIVE',
  BACKUP_PRUNING_LEEWAY: 'retention is calendar based: see BACKUP_KEEP_* and BACKUP_RETENTION_DAYS',
  BACKUP_SKIP_BACKENDS_FROM_PRUNE: ONE_TARGET,
  BACKUP_FROM_SNAPSHOT: 'use BACKUP_MODE (stop, pause or online) to get a consistent copy',
  BACKUP_EXCLUDE_REGEXP:
    'list paths per volume under `exclude` in the config file, or in the moodle-backup.exclude label',
  BACKUP_STOP_SERVICE_TIMEOUT:
    'Swarm services are not supported: BACKUP_STOP_CONTAINER_TIMEOUT applies to containers',
  GZIP_PARALLELISM: 'use BACKUP_COMPRESSION=zstd for faster compression',
  GPG_PASSPHRASE: NO_ENCRYPT,
  GPG_PUBLIC_KEY_RING: NO_ENCRYPT,
  AWS_ENDPOINT_INSECURE:
    'TLS certificates are always verified: use AWS_ENDPOINT_PROTO=http on a trusted network',
  AWS_ENDPOINT_CA_CERT: 'set NODE_EXTRA_CA_CERTS to the PEM file instead',
  AWS_STORAGE_CLASS: 'set a lifecycle rule on the bucket instead',
  AWS_IAM_ROLE_ENDPOINT:
    'leave AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY unset and the AWS SDK finds instance or task roles itself',
  EXEC_LABEL: NO_HOOKS,
  EXEC_FORWARD_OUTPUT: NO_HOOKS,
  LOCK_TIMEOUT: 'the run lock has no configurable timeout',
  NOTIFICATION_URLS: NO_NOTIFY,
  NOTIFICATION_LEVEL: NO_NOTIFY,
  EMAIL_NOTIFICATION_RECIPIENT: NO_NOTIFY,
  EMAIL_NOTIFICATION_SENDER: NO_NOTIFY,
  EMAIL_SMTP_HOST: NO_NOTIFY,
  EMAIL_SMTP_PORT: NO_NOTIFY,
  EMAIL_SMTP_USERNAME: NO_NOTIFY,
  EMAIL_SMTP_PASSWORD: NO_NOTIFY,
  ...Object.fromEntries(
    [
      'WEBDAV_URL',
      'WEBDAV_URL_INSECURE',
      'WEBDAV_PATH',
      'WEBDAV_USERNAME',
      'WEBDAV_PASSWORD',
      'SSH_HOST_NAME',
      'SSH_PORT',
      'SSH_USER',
      'SSH_PASSWORD',
      'SSH_IDENTITY_FILE',
      'SSH_IDENTITY_PASSPHRASE',
      'SSH_REMOTE_PATH',
      'AZURE_STORAGE_ACCOUNT_NAME',
      'AZURE_STORAGE_PRIMARY_ACCOUNT_KEY',
      'AZURE_STORAGE_CONNECTION_STRING',
      'AZURE_STORAGE_CONTAINER_NAME',
      'AZURE_STORAGE_PATH',
      'AZURE_STORAGE_ENDPOINT',
      'AZURE_STORAGE_ACCESS_TIER',
      'DROPBOX_REFRESH_TOKEN',
      'DROPBOX_APP_KEY',
      'DROPBOX_APP_SECRET',
      'DROPBOX_REMOTE_PATH',
      'DROPBOX_CONCURRENCY_LEVEL',
      'GOOGLE_DRIVE_CREDENTIALS_JSON',
      'GOOGLE_DRIVE_FOLDER_ID',
      'GOOGLE_DRIVE_IMPERSONATE_SUBJECT',
    ].map((name) => [name, ONE_TARGET]),
  ),
};
