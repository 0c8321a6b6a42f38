import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RetentionPolicy } from '../../../src/config/types.js';
import {
  bucketKey,
  type Decision,
  describeDecisions,
  planRetention,
  type SnapshotRef,
} from '../../../src/retention/policy.js';

const NOW = new Date('2027-01-10T12:00:00Z'); // a Sunday, in ISO week 2027-W01

function policy(p: Partial<RetentionPolicy> = {}): RetentionPolicy {
  return {
    keepLast: 0,
    keepHourly: 0,
    keepDaily: 0,
    keepWeekly: 0,
    keepMonthly: 0,
    keepYearly: 0,
    keepWithinDays: 0,
    keepPreRestoreDays: 14,
    sweepGraceHours: 6,
    ...p,
  };
}

function snap(id: string, iso: string, extra: Partial<SnapshotRef> = {}): SnapshotRef {
  return { id, time: new Date(iso), kind: 'scheduled', complete: true, ok: true, ...extra };
}

const byId = (decisions: Decision[]) => new Map(decisions.map((d) => [d.id, d]));
const keptIds = (decisions: Decision[]) => decisions.filter((d) => d.keep).map((d) => d.id);
const ids = (list: string) => list.split(/\s+/).filter(Boolean);

// 40 complete, ok snapshots over two years: sparse in 2025/2026, dense around the turn of 2026/2027,
// several per day on 2026-11-20, 2027-01-09 and 2027-01-10, no snapshot on 2027-01-05/06.
const HISTORY: SnapshotRef[] = [
  snap('s01', '2025-01-05T02:00:00Z'),
  snap('s02', '2025-02-14T02:00:00Z'),
  snap('s03', '2025-03-30T01:30:00Z'), // EU DST starts
  snap('s04', '2025-06-15T02:00:00Z'),
  snap('s05', '2025-09-01T02:00:00Z'),
  snap('s06', '2025-11-30T02:00:00Z'),
  snap('s07', '2025-12-29T02:00:00Z'), // Monday of 2026-W01
  snap('s08', '2025-12-31T23:59:00Z'), // year 2025, ISO week 2026-W01
  snap('s09', '2026-01-01T00:00:00Z'),
  snap('s10', '2026-02-10T02:00:00Z'),
  snap('s11', '2026-03-29T01:30:00Z'),
  snap('s12', '2026-05-15T02:00:00Z'),
  snap('s13', '2026-07-04T02:00:00Z'),
  snap('s14', '2026-09-20T02:00:00Z'),
  snap('s15', '2026-10-25T00:30:00Z'), // EU DST ends
  snap('s16', '2026-11-02T02:00:00Z'), // 2026-W45
  snap('s17', '2026-11-16T02:00:00Z'), // 2026-W47
  snap('s18', '2026-11-20T02:00:00Z', { kind: 'manual' }),
  snap('s19', '2026-11-20T14:00:00Z'),
  snap('s20', '2026-11-20T14:30:00Z'), // same hour as s19
  snap('s21', '2026-12-01T02:00:00Z'), // 2026-W49 (no snapshot in W48)
  snap('s22', '2026-12-07T02:00:00Z'), // W50
  snap('s23', '2026-12-14T02:00:00Z'), // W51
  snap('s24', '2026-12-21T02:00:00Z'), // W52
  snap('s25', '2026-12-28T02:00:00Z'), // W53 …
  snap('s26', '2026-12-31T02:00:00Z'),
  snap('s27', '2026-12-31T23:00:00Z'), // newest of 2026
  snap('s28', '2027-01-01T01:00:00Z'),
  snap('s29', '2027-01-03T02:00:00Z'), // … Sunday, last day of 2026-W53
  snap('s30', '2027-01-04T02:00:00Z'), // Monday of 2027-W01
  snap('s31', '2027-01-07T02:00:00Z'),
  snap('s32', '2027-01-08T02:00:00Z'),
  snap('s33', '2027-01-09T02:00:00Z'),
  snap('s34', '2027-01-09T08:00:00Z', { kind: 'manual' }),
  snap('s35', '2027-01-09T14:00:00Z'),
  snap('s36', '2027-01-09T20:00:00Z'),
  snap('s37', '2027-01-10T02:00:00Z'),
  snap('s38', '2027-01-10T08:00:00Z'),
  snap('s39', '2027-01-10T08:30:00Z'), // same hour as s38
  snap('s40', '2027-01-10T11:00:00Z'),
];
const ALL = HISTORY.map((s) => s.id);

/** Policy, the exact ids kept (or, after '-', the exact ids forgotten), and the reasons of a few. */
type Case = [Partial<RetentionPolicy>, string, Record<string, string[]>];

const CASES: Case[] = [
  [{ keepLast: 1 }, 's40', { s40: ['last 1', 'newest good snapshot'] }],
  [{ keepLast: 5 }, 's40 s39 s38 s37 s36', { s36: ['last 5'] }],
  // s38 shares its hour with the newer s39
  [{ keepHourly: 3 }, 's40 s39 s37', { s39: ['hourly 2027-01-10T08'], s38: ['not kept by any rule'] }],
  // 2027-01-05 and -06 have no snapshot
  [{ keepDaily: 5 }, 's40 s36 s32 s31 s30', { s36: ['daily 2027-01-09'], s30: ['daily 2027-01-04'] }],
  // 2026-W53 runs from 2026-12-28 to 2027-01-03
  [
    { keepWeekly: 4 },
    's40 s29 s24 s23',
    { s40: ['weekly 2027-W01', 'newest good snapshot'], s29: ['weekly 2026-W53'] },
  ],
  // 2026-W48 and W46 have no snapshot
  [
    { keepWeekly: 8 },
    's40 s29 s24 s23 s22 s21 s20 s16',
    { s20: ['weekly 2026-W47'], s16: ['weekly 2026-W45'] },
  ],
  [{ keepMonthly: 6 }, 's40 s27 s20 s15 s14 s13', { s13: ['monthly 2026-07'] }],
  // more buckets asked for than exist: the newest of every month that has a snapshot
  [
    { keepMonthly: 100 },
    's40 s27 s20 s15 s14 s13 s12 s11 s10 s09 s08 s06 s05 s04 s03 s02 s01',
    { s08: ['monthly 2025-12'], s07: ['not kept by any rule'] },
  ],
  // calendar years, not ISO week years: s08 (2025-12-31) is the newest of 2025
  [{ keepYearly: 10 }, 's40 s27 s08', { s27: ['yearly 2026'], s08: ['yearly 2025'] }],
  [
    { keepWithinDays: 3 },
    's40 s39 s38 s37 s36 s35 s34 s33 s32',
    { s32: ['within 3 days'], s31: ['not kept by any rule'] },
  ],
  [
    { keepLast: 2, keepDaily: 3, keepWeekly: 2, keepMonthly: 3, keepYearly: 2 },
    's40 s39 s36 s32 s29 s27 s20',
    {
      s40: [
        'last 1',
        'daily 2027-01-10',
        'weekly 2027-W01',
        'monthly 2027-01',
        'yearly 2027',
        'newest good snapshot',
      ],
      s39: ['last 2'],
      s27: ['monthly 2026-12', 'yearly 2026'],
    },
  ],
  [
    { keepWithinDays: 30, keepYearly: 3 },
    's40 s39 s38 s37 s36 s35 s34 s33 s32 s31 s30 s29 s28 s27 s26 s25 s24 s23 s08',
    { s27: ['yearly 2026', 'within 30 days'], s23: ['within 30 days'], s08: ['yearly 2025'] },
  ],
  // only the older of two snapshots in one hour goes
  [{ keepHourly: 100 }, '-s38 s19', { s20: ['hourly 2026-11-20T14'], s09: ['hourly 2026-01-01T00'] }],
  [
    { keepDaily: 7, keepWeekly: 5, keepMonthly: 12, keepYearly: 5 },
    '-s39 s38 s37 s35 s34 s33 s26 s25 s21 s19 s18 s17 s16 s07 s05 s04 s03 s02 s01',
    {
      s29: ['daily 2027-01-03', 'weekly 2026-W53'],
      s28: ['daily 2027-01-01'],
      s22: ['weekly 2026-W50'],
      s08: ['monthly 2025-12', 'yearly 2025'],
    },
  ],
  // a policy that keeps nothing means "no retention configured"
  [{}, '-', { s40: ['no retention policy', 'newest good snapshot'], s01: ['no retention policy'] }],
];

describe('planRetention over two years of history', () => {
  it.each(CASES)('%o → %s', (p, spec, reasons) => {
    const decisions = planRetention(HISTORY, policy(p), NOW);
    const expected = spec.startsWith('-') ? ALL.filter((id) => !ids(spec.slice(1)).includes(id)) : ids(spec);
    expect(keptIds(decisions).sort()).toEqual([...expected].sort());
    const map = byId(decisions);
    for (const [id, want] of Object.entries(reasons)) expect(map.get(id)?.reasons, id).toEqual(want);
  });

  it('returns one decision per input, newest first, whatever the input order', () => {
    const forward = planRetention(HISTORY, policy({ keepDaily: 7, keepMonthly: 3 }), NOW);
    const backward = planRetention([...HISTORY].reverse(), policy({ keepDaily: 7, keepMonthly: 3 }), NOW);
    expect(forward).toEqual(backward);
    expect(forward.map((d) => d.id)).toEqual([...ALL].reverse());
  });
});

describe('planRetention edge cases', () => {
  it('plans nothing for an empty list', () => {
    expect(planRetention([], policy({ keepLast: 3 }), NOW)).toEqual([]);
  });

  it('keeps a single snapshot under an all-zero policy', () => {
    const [d] = planRetention([snap('a', '2020-01-01T00:00:00Z')], policy({ keepPreRestoreDays: 0 }), NOW);
    expect(d).toEqual({
      id: 'a',
      time: new Date('2020-01-01T00:00:00Z'),
      keep: true,
      reasons: ['no retention policy', 'newest good snapshot'],
    });
  });

  it('orders equal times by id and keeps the first of them in a bucket', () => {
    const same = '2027-01-10T02:00:00Z';
    const decisions = planRetention([snap('b', same), snap('a', same)], policy({ keepDaily: 1 }), NOW);
    expect(decisions.map((d) => [d.id, d.keep])).toEqual([
      ['a', true],
      ['b', false],
    ]);
  });

  const failedHistory = [
    snap('f2', '2027-01-10T11:00:00Z', { ok: false }),
    snap('f1', '2027-01-09T02:00:00Z', { ok: false }),
    snap('g1', '2027-01-08T02:00:00Z'),
    snap('g2', '2027-01-07T02:00:00Z'),
  ];

  it('protects the newest good snapshot when the newest entry failed', () => {
    const map = byId(planRetention(failedHistory, policy({ keepWithinDays: 1 }), NOW));
    expect(map.get('f2')).toMatchObject({
      keep: true,
      reasons: ['newest entry, failed (kept for inspection)'],
    });
    expect(map.get('f1')).toMatchObject({ keep: false, reasons: ['failed (manifest status not ok)'] });
    expect(map.get('g1')).toMatchObject({ keep: true, reasons: ['newest good snapshot'] });
    expect(map.get('g2')).toMatchObject({ keep: false, reasons: ['not kept by any rule'] });
  });

  it('does not count failed snapshots toward keep rules', () => {
    const decisions = planRetention(failedHistory, policy({ keepLast: 1, keepDaily: 2 }), NOW);
    expect(keptIds(decisions)).toEqual(['f2', 'g1', 'g2']);
    expect(byId(decisions).get('g1')?.reasons).toEqual([
      'last 1',
      'daily 2027-01-08',
      'newest good snapshot',
    ]);
  });

  it('forgets a failed snapshot when a newer entry exists, even an incomplete one', () => {
    const inProgress = snap('i1', '2027-01-10T11:30:00Z', { complete: false, ok: false });
    const map = byId(planRetention([inProgress, ...failedHistory], policy({ keepLast: 1 }), NOW));
    expect(map.get('i1')).toMatchObject({ keep: true, reasons: ['incomplete, within grace period'] });
    expect(map.get('f2')?.keep).toBe(false);
  });

  const preRestore = [
    snap('p1', '2027-01-10T10:00:00Z', { kind: 'pre-restore' }),
    snap('s1', '2027-01-10T02:00:00Z'),
    snap('p2', '2026-12-31T00:00:00Z', { kind: 'pre-restore' }), // 10.5 days old
    snap('p3', '2026-12-20T00:00:00Z', { kind: 'pre-restore' }), // 21.5 days old
    snap('s0', '2026-12-01T00:00:00Z'),
  ];

  it('keeps young pre-restore snapshots, forgets old ones, and does not count them toward GFS', () => {
    const decisions = planRetention(preRestore, policy({ keepLast: 1, keepWithinDays: 30 }), NOW);
    const map = byId(decisions);
    expect(keptIds(decisions)).toEqual(['p1', 's1', 'p2']);
    expect(map.get('p1')?.reasons).toEqual(['newest good snapshot', 'pre-restore younger than 14 days']);
    expect(map.get('s1')?.reasons).toEqual(['last 1', 'within 30 days']);
    expect(map.get('p2')?.reasons).toEqual(['pre-restore younger than 14 days']);
    expect(map.get('p3')?.reasons).toEqual(['pre-restore older than 14 days']);
  });

  it('keeps an old pre-restore snapshot when it is the only good one, or when no policy is set', () => {
    const failed = snap('s0', '2026-12-01T00:00:00Z', { ok: false });
    const old = snap('p3', '2026-12-20T00:00:00Z', { kind: 'pre-restore' });
    expect(planRetention([old, failed], policy({ keepLast: 5 }), NOW).map((d) => d.reasons)).toEqual([
      ['newest good snapshot'],
      ['failed (manifest status not ok)'],
    ]);
    expect(keptIds(planRetention(preRestore, policy(), NOW))).toEqual(['p1', 's1', 'p2', 'p3', 's0']);
  });

  it('keeps incomplete entries within the grace period and never counts them as good', () => {
    const entries = [
      snap('i1', '2027-01-10T08:00:00Z', { complete: false, ok: true }), // 4 h old
      snap('i2', '2027-01-10T02:00:00Z', { complete: false, ok: false }), // 10 h old
      snap('g', '2027-01-09T02:00:00Z'),
    ];
    const decisions = planRetention(entries, policy({ keepLast: 1 }), NOW);
    expect(decisions.map((d) => [d.id, d.keep, d.reasons])).toEqual([
      ['i1', true, ['incomplete, within grace period']],
      ['i2', false, ['incomplete, older than 6 hours']],
      ['g', true, ['last 1', 'newest good snapshot']],
    ]);
  });

  it.each([
    ['2026-12-31T12:00:00Z', '2026-W53'],
    ['2027-01-01T00:00:00Z', '2026-W53'],
    ['2027-01-03T23:59:59Z', '2026-W53'],
    ['2027-01-04T00:00:00Z', '2027-W01'],
    ['2025-12-29T00:00:00Z', '2026-W01'],
    ['2024-12-30T00:00:00Z', '2025-W01'],
    ['2021-01-03T12:00:00Z', '2020-W53'],
    ['2026-11-20T14:00:00Z', '2026-W47'],
  ])('puts %s in ISO week %s', (iso, week) => {
    expect(bucketKey('weekly', new Date(iso))).toBe(week);
  });

  it('treats 2026-12-31 and 2027-01-01 as one week but two years', () => {
    const entries = [
      snap('jan1', '2027-01-01T06:00:00Z'),
      snap('dec31', '2026-12-31T06:00:00Z'),
      snap('dec27', '2026-12-27T06:00:00Z'),
    ];
    expect(keptIds(planRetention(entries, policy({ keepWeekly: 2 }), NOW))).toEqual(['jan1', 'dec27']);
    expect(keptIds(planRetention(entries, policy({ keepYearly: 2 }), NOW))).toEqual(['jan1', 'dec31']);
  });

  describe('in a time zone with DST', () => {
    const saved = process.env.TZ;
    beforeAll(() => {
      process.env.TZ = 'Europe/Berlin';
    });
    afterAll(() => {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    });

    it('buckets by UTC day and hour, not local time', () => {
      expect(new Date('2026-03-29T23:30:00Z').getDate()).toBe(30); // the zone is in effect
      const days = [
        snap('d2', '2026-03-29T23:30:00Z'), // local 2026-03-30 01:30 CEST
        snap('d1', '2026-03-29T00:30:00Z'), // local 2026-03-29 01:30 CET
        snap('d0', '2026-03-28T12:00:00Z'),
      ];
      expect(keptIds(planRetention(days, policy({ keepDaily: 2 }), NOW))).toEqual(['d2', 'd0']);
      const hours = [
        snap('h2', '2026-10-25T01:30:00Z'), // local 02:30 CET
        snap('h1', '2026-10-25T00:30:00Z'), // local 02:30 CEST, the same wall-clock hour
      ];
      const decisions = planRetention(hours, policy({ keepHourly: 2 }), NOW);
      expect(decisions.map((d) => d.reasons[0])).toEqual(['hourly 2026-10-25T01', 'hourly 2026-10-25T00']);
    });
  });

  it('rejects invalid policies and inconsistent listings', () => {
    const code = (c: string) => expect.objectContaining({ name: 'SidecarError', code: c });
    expect(() => planRetention([], policy({ keepLast: -1 }), NOW)).toThrow(code('CONFIG_INVALID'));
    expect(() => planRetention([], policy({ keepDaily: 1.5 }), NOW)).toThrow(code('CONFIG_INVALID'));
    const dup = [snap('a', '2027-01-01T00:00:00Z'), snap('a', '2027-01-02T00:00:00Z')];
    expect(() => planRetention(dup, policy(), NOW)).toThrow(code('STORAGE_FAILED'));
  });
});

describe('describeDecisions', () => {
  it('renders a plain table with a summary', () => {
    const decisions = planRetention(
      [snap('a', '2027-01-10T02:00:00Z'), snap('b', '2027-01-09T02:00:00Z')],
      policy({ keepLast: 1 }),
      NOW,
    );
    expect(describeDecisions(decisions)).toBe(
      [
        'ID  TIME (UTC)            ACTION  REASONS',
        'a   2027-01-10 02:00:00Z  keep    last 1, newest good snapshot',
        'b   2027-01-09 02:00:00Z  forget  not kept by any rule',
        '',
        '1 kept, 1 forgotten',
        '',
      ].join('\n'),
    );
  });

  it('says so when there is nothing to show', () => {
    expect(describeDecisions([])).toBe('no snapshots\n');
  });
});
