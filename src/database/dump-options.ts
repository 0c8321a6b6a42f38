/**
 * mariadb-dump: one consistent snapshot of every InnoDB table (a single REPEATABLE READ transaction, no locks
 * held), plus stored routines, events and triggers; binary columns as hex so the dump is plain text.
 */
export const DUMP_OPTIONS = [
  '--single-transaction',
  '--routines',
  '--events',
  '--triggers',
  '--hex-blob',
  '--default-character-set=utf8mb4',
] as const;

/**
 * pg_dump, per application database: plain SQL (loaded by psql, rows countable while streaming), one
 * REPEATABLE READ snapshot per database (pg_dump's own), and `--create --clean --if-exists` so the load
 * replaces the empty database a fresh server's initialisation made.
 */
export const PG_DUMP_OPTIONS = [
  '--format=plain',
  '--create',
  '--clean',
  '--if-exists',
  '--no-password',
] as const;
