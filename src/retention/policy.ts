/**
 * Pure GFS retention planning, in the spirit of restic's `forget --keep-*`: given the snapshots a target
 * holds, a policy and "now", decide for every snapshot whether it is kept and why. No I/O, no clock reads,
 * no dependence on the process time zone: every calendar bucket is computed in UTC.
 *
 * Rules, applied to the "counted" snapshots (complete, manifest status ok, kind scheduled or manual),
 * newest first:
 * - keepLast N keeps the N newest.
 * - keepHourly/Daily/Weekly/Monthly/Yearly N keep the newest snapshot of each of the N most recent buckets
 *   that contain a snapshot. Bucket keys (UTC): hour 'YYYY-MM-DDTHH', day 'YYYY-MM-DD', ISO 8601 week
 *   'YYYY-Www' (the ISO week-numbering year, so 2025-12-29 is 2026-W01), month 'YYYY-MM', year 'YYYY'
 *   (calendar year).
 * - keepWithinDays N keeps every counted snapshot younger than N days (age strictly below N × 24 h).
 * A snapshot kept by several rules lists all of them.
 *
 * If every keep* count and keepWithinDays are 0 the policy keeps nothing, which is treated as "no retention
 * configured": every complete+ok snapshot of any kind (pre-restore included) is kept ('no retention policy').
 *
 * Safety rules, always applied on top:
 * - The newest complete+ok snapshot of any kind is never forgotten ('newest good snapshot').
 * - Pre-restore snapshots do not count toward keepLast, the GFS buckets or keepWithinDays; a complete+ok one is
 *   kept only while younger than keepPreRestoreDays (and by the two rules above).
 * - Incomplete entries (no manifest, whatever `ok` says) may be a run in progress: they are kept while younger
 *   than sweepGraceHours and forgotten after. They never count as good.
 * - Complete but failed snapshots (ok = false) never count toward any rule and are forgotten, unless one is
 *   the newest entry overall (incomplete entries included): that one is kept for inspection.
 *
 * Output: one Decision per input, newest first; equal times are ordered by id (ascending, code-unit order),
 * which also decides which of two equal-time snapshots is the "newest" in a bucket. A forgotten snapshot
 * carries one reason explaining why.
 */

import { SidecarError } from '../common/errors.js';
import type { RetentionPolicy } from '../config/types.js';

export interface SnapshotRef {
  id: string;
  time: Date;
  kind: 'scheduled' | 'manual' | 'pre-restore';
  /** Has a manifest. */
  complete: boolean;
  /** The manifest says status ok. */
  ok: boolean;
}

export interface Decision {
  id: string;
  /** The snapshot's time, copied from the input so a Decision can be shown on its own. */
  time: Date;
  keep: boolean;
  /** Why it is kept (every rule that keeps it), or, when forgotten, the single reason why. */
  reasons: string[];
}

export type BucketUnit = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const COUNT_FIELDS = [
  'keepLast',
  'keepHourly',
  'keepDaily',
  'keepWeekly',
  'keepMonthly',
  'keepYearly',
] as const;
const DURATION_FIELDS = ['keepWithinDays', 'keepPreRestoreDays', 'sweepGraceHours'] as const;

/** ISO 8601 week-numbering year and week of a moment, in UTC. */
export function isoWeek(date: Date): { year: number; week: number } {
  const midnight = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  const weekday = (date.getUTCDay() + 6) % 7; // Monday = 0 … Sunday = 6
  // The Thursday of the same ISO week decides the year; weeks count from the year's first Thursday.
  const thursday = new Date(midnight + (3 - weekday) * DAY_MS);
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * DAY_MS));
  return { year, week };
}

/** The UTC bucket a moment falls into, e.g. daily → '2026-11-20', weekly → '2026-W47'. */
export function bucketKey(unit: BucketUnit, date: Date): string {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:mm:ss.sssZ, always UTC
  switch (unit) {
    case 'hourly':
      return iso.slice(0, 13);
    case 'daily':
      return iso.slice(0, 10);
    case 'weekly': {
      const { year, week } = isoWeek(date);
      return `${String(year).padStart(4, '0')}-W${String(week).padStart(2, '0')}`;
    }
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
  }
}

function newestFirst(a: SnapshotRef, b: SnapshotRef): number {
  const byTime = b.time.getTime() - a.time.getTime();
  if (byTime !== 0) return byTime;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function validate(snapshots: SnapshotRef[], policy: RetentionPolicy, now: Date): void {
  for (const field of COUNT_FIELDS) {
    const value = policy[field];
    if (!Number.isInteger(value) || value < 0) {
      throw new SidecarError('CONFIG_INVALID', `retention ${field} must be a whole number ≥ 0, got ${value}`);
    }
  }
  for (const field of DURATION_FIELDS) {
    const value = policy[field];
    if (!Number.isFinite(value) || value < 0) {
      throw new SidecarError('CONFIG_INVALID', `retention ${field} must be a number ≥ 0, got ${value}`);
    }
  }
  if (Number.isNaN(now.getTime())) throw new RangeError('planRetention: now is not a valid date');
  const ids = new Set<string>();
  for (const s of snapshots) {
    if (ids.has(s.id)) {
      throw new SidecarError(
        'STORAGE_FAILED',
        `snapshot id ${s.id} is listed twice`,
        'the listing is inconsistent',
      );
    }
    ids.add(s.id);
    if (Number.isNaN(s.time.getTime())) {
      throw new SidecarError(
        'STORAGE_FAILED',
        `snapshot ${s.id} has no valid time`,
        'the listing is inconsistent',
      );
    }
  }
}

/** True when the policy would keep nothing at all: treated as "no retention configured". */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return COUNT_FIELDS.every((field) => policy[field] === 0) && policy.keepWithinDays === 0;
}

export function planRetention(snapshots: SnapshotRef[], policy: RetentionPolicy, now: Date): Decision[] {
  validate(snapshots, policy, now);
  const ordered = [...snapshots].sort(newestFirst);
  const reasons = new Map<string, string[]>(ordered.map((s) => [s.id, []]));
  const add = (s: SnapshotRef, reason: string): void => {
    reasons.get(s.id)?.push(reason);
  };
  const age = (s: SnapshotRef) => now.getTime() - s.time.getTime();

  const good = ordered.filter((s) => s.complete && s.ok);
  const counted = good.filter((s) => s.kind !== 'pre-restore');

  if (isEmptyPolicy(policy)) {
    for (const s of good) add(s, 'no retention policy');
  } else {
    for (const [i, s] of counted.slice(0, policy.keepLast).entries()) add(s, `last ${i + 1}`);
    const units: [BucketUnit, number][] = [
      ['hourly', policy.keepHourly],
      ['daily', policy.keepDaily],
      ['weekly', policy.keepWeekly],
      ['monthly', policy.keepMonthly],
      ['yearly', policy.keepYearly],
    ];
    for (const [unit, count] of units) {
      const seen = new Set<string>();
      for (const s of counted) {
        if (seen.size >= count) break;
        const key = bucketKey(unit, s.time);
        if (seen.has(key)) continue; // an older snapshot of a bucket already kept
        seen.add(key);
        add(s, `${unit} ${key}`);
      }
    }
    if (policy.keepWithinDays > 0) {
      for (const s of counted) {
        if (age(s) < policy.keepWithinDays * DAY_MS) add(s, `within ${policy.keepWithinDays} days`);
      }
    }
  }

  const newestGood = good[0];
  if (newestGood) add(newestGood, 'newest good snapshot');
  for (const s of good) {
    if (s.kind === 'pre-restore' && age(s) < policy.keepPreRestoreDays * DAY_MS) {
      add(s, `pre-restore younger than ${policy.keepPreRestoreDays} days`);
    }
  }
  for (const s of ordered) {
    if (!s.complete && age(s) < policy.sweepGraceHours * HOUR_MS) add(s, 'incomplete, within grace period');
  }
  const newest = ordered[0];
  if (newest?.complete && !newest.ok) add(newest, 'newest entry, failed (kept for inspection)');

  return ordered.map((s) => {
    const kept = reasons.get(s.id) ?? [];
    return kept.length > 0
      ? { id: s.id, time: s.time, keep: true, reasons: kept }
      : { id: s.id, time: s.time, keep: false, reasons: [forgetReason(s, policy)] };
  });
}

function forgetReason(s: SnapshotRef, policy: RetentionPolicy): string {
  if (!s.complete) return `incomplete, older than ${policy.sweepGraceHours} hours`;
  if (!s.ok) return 'failed (manifest status not ok)';
  if (s.kind === 'pre-restore') return `pre-restore older than ${policy.keepPreRestoreDays} days`;
  return 'not kept by any rule';
}

function formatTime(time: Date): string {
  return `${time.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

export const DECISION_HEADERS = ['ID', 'TIME (UTC)', 'ACTION', 'REASONS'];

/** One row per decision: id, time in UTC, keep/forget, the rules that keep it. */
export function decisionRows(decisions: Decision[]): string[][] {
  return decisions.map((d) => [d.id, formatTime(d.time), d.keep ? 'keep' : 'forget', d.reasons.join(', ')]);
}

/** A plain-text table of decisions (id, time in UTC, keep/forget, reasons) and a summary, for `prune --dry-run`. */
export function describeDecisions(decisions: Decision[]): string {
  if (decisions.length === 0) return 'no snapshots\n';
  const rows = [DECISION_HEADERS, ...decisionRows(decisions)];
  const widths = [0, 1, 2].map((col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  const lines = rows.map((row) =>
    row
      .map((cell, col) => cell.padEnd(widths[col] ?? 0))
      .join('  ')
      .trimEnd(),
  );
  const kept = decisions.filter((d) => d.keep).length;
  lines.push('', `${kept} kept, ${decisions.length - kept} forgotten`);
  return `${lines.join('\n')}\n`;
}
