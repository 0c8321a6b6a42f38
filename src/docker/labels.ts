import { ownerLabel } from '../common/owner.js';

/** Our label namespace, plus offen/docker-volume-backup's labels we honour. Documented in README ("Labels"). */
export const LABELS = {
  /** true | false: stop this container during backups (false excludes it from the default set). */
  stop: 'moodle-backup.stop',
  /** stop | pause: how to quiesce this container. */
  mode: 'moodle-backup.mode',
  /** Comma list of services this one depends on, for stacks made without Compose v2's depends_on label. */
  dependsOn: 'moodle-backup.depends-on',
  /** Cron expression: back up the named volumes this container mounts on this schedule (its own job). */
  schedule: 'moodle-backup.schedule',
  /** Shell command run in this container before the backup stops anything. */
  pre: 'moodle-backup.pre',
  /** Shell command run in this container after the stack is running again (also after a failed run). */
  post: 'moodle-backup.post',
  /**
   * Comma list of absolute paths inside this container (each under one of its volume mounts) to leave out of
   * that volume's archive; `dir/` keeps the empty directory. Replaces the Moodle defaults for the volumes it
   * names; an empty value excludes nothing from every volume this container mounts.
   */
  exclude: 'moodle-backup.exclude',
  /** true: this container runs Moodle (maintenance mode, facts); default: found by admin/cli/maintenance.php. */
  moodle: 'moodle-backup.moodle',
  /**
   * Absolute path of Moodle's top directory (where config.php is) in this container, for code that is neither
   * in a mount nor at a usual path (moodle/locate.ts).
   */
  moodleDir: 'moodle-backup.moodle-dir',
  /** true: this container is the MariaDB server to dump in online mode; default: found by its server binary. */
  database: 'moodle-backup.database',
  /** offen's hook labels, honoured the same way. */
  offenPre: 'docker-volume-backup.archive-pre',
  offenPost: 'docker-volume-backup.archive-post',
  /** offen's label; its value must equal BACKUP_STOP_DURING_BACKUP_LABEL (default "true"). */
  offenStop: 'docker-volume-backup.stop-during-backup',
} as const;

/** Marks helper containers the sidecar creates, so discovery and cleanup can tell them apart. */
export const HELPER_LABEL = 'moodle-backup.helper';

/**
 * The helper label's value: which process made it (common/owner.ts, restart-proof), so crash recovery removes only
 * dead processes' helpers.
 */
export function helperOwner(): string {
  return ownerLabel();
}
