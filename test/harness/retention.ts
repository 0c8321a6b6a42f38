import type { RetentionPolicy } from '../../src/config/types.js';

/** keepLast 2 and nothing calendar based, so the decisions do not depend on the time of day the test runs. */
export const KEEP_LAST_2: RetentionPolicy = {
  keepLast: 2,
  keepHourly: 0,
  keepDaily: 0,
  keepWeekly: 0,
  keepMonthly: 0,
  keepYearly: 0,
  keepWithinDays: 0,
  keepPreRestoreDays: 14,
  sweepGraceHours: 24,
};

/** KEEP_LAST_2 as the CLI's environment sets it. */
export const KEEP_LAST_2_ENV = {
  BACKUP_KEEP_LAST: '2',
  BACKUP_KEEP_DAILY: '0',
  BACKUP_KEEP_WEEKLY: '0',
  BACKUP_KEEP_MONTHLY: '0',
  BACKUP_KEEP_YEARLY: '0',
};
