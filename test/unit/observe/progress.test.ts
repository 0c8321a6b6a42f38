import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { blobsLabel, dumpLabel, manifestTotals, ProgressBoard } from '../../../src/observe/progress.js';
import { StatusLine } from '../../../src/observe/terminal.js';

/** A terminal that keeps what was written; its lines split as a screen shows them (each redraw starts with \r). */
function screen(columns = 80): { status: StatusLine; lines: () => string[] } {
  let text = '';
  const status = new StatusLine({ write: (s: string) => (text += s), columns });
  return {
    status,
    lines: () =>
      text
        .split(/\n|\r/)
        .map((l) => l.trimEnd())
        .filter((l) => l !== ''),
  };
}

const sink = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

describe('ProgressBoard', () => {
  it('a dump (one item, not a tar): bytes only, no "all" part, "~" while estimated, 100% at the end', async () => {
    const s = screen();
    const label = dumpLabel('mariadb');
    const board = new ProgressBoard({ [label]: { bytes: 4 << 20, estimated: true } }, s.status);
    const sql = Buffer.from('INSERT INTO t VALUES (1);\n'.repeat(100_000)); // ~2.5 MiB, less than estimated
    await pipeline(
      Readable.from([sql.subarray(0, 1 << 20), sql.subarray(1 << 20)]),
      board.item(label),
      sink(),
    );
    const lines = s.lines();
    expect(lines[0]).toMatch(/^mariadb\.sql ~\d+% 1\.0M\/~4\.0M/);
    const last = lines.at(-1) as string;
    expect(last).toMatch(/^mariadb\.sql 100% 2\.5M\/2\.5M \S+\/s$/);
    for (const l of lines) {
      expect(l).not.toContain('│');
      expect(l).not.toContain('files');
    }
  });

  it('a volume\'s blobs with exact totals: "n/N files" without "~"; the phase\'s part reaches 100%', () => {
    const s = screen();
    const volumes = [
      { name: 'moodle_data', rawBytes: 3000 },
      { name: 'moodledata_data', rawBytes: 10_240, blobs: { count: 4, bytes: 4000 } },
    ];
    const totals = manifestTotals(volumes, { blobs: true });
    expect(Object.keys(totals)).toEqual(['moodle_data', 'moodledata_data', blobsLabel('moodledata_data')]);
    expect(manifestTotals(volumes)).not.toHaveProperty(blobsLabel('moodledata_data'));
    const board = new ProgressBoard(totals, s.status);
    const line = board.item(blobsLabel('moodledata_data'));
    line.advance(1000);
    for (let i = 0; i < 3; i++) line.advance(1000);
    line.finish();
    const lines = s.lines();
    expect(lines[0]).toMatch(/^moodledata_data blobs 25% 1000B\/3.9K 1\/4 files .*│ all 5% 1000B\/17K/);
    expect(lines.at(-1)).toMatch(/^moodledata_data blobs 100% 3\.9K\/3\.9K 4 files \S+\/s │ all 23% /);
    for (const l of lines) expect(l).not.toContain('~');
  });

  it('a total learnt midway (a count running alongside) gives the lines a percent from the next line on', async () => {
    const s = screen();
    const board = new ProgressBoard({ x: { estimated: true } }, s.status);
    const p = board.item('x');
    p.advance(100);
    board.setTotal('x', { bytes: 400, files: 4, estimated: false });
    await new Promise((r) => setTimeout(r, 300)); // the next redraw
    p.advance(100);
    p.advance(100);
    p.advance(100);
    p.finish();
    const lines = s.lines();
    // No total yet: no percent made up from what is done.
    expect(lines[0]).toBe('x 100B 1 files');
    expect(lines[1]).toMatch(/^x 50% 200B\/400B 2\/4 files \S+\/s ETA \d+s$/);
    expect(lines.at(-1)).toMatch(/^x 100% 400B\/400B 4 files \S+\/s$/);
  });

  it('no ETA until 2% of the total is done: a rate from the first bytes is start-up, not a forecast', async () => {
    const s = screen();
    const board = new ProgressBoard({ x: { bytes: 100_000, files: 100, estimated: false } }, s.status);
    const p = board.item('x');
    p.advance(1000);
    await new Promise((r) => setTimeout(r, 300)); // the next redraw, with a speed
    p.advance(900);
    await new Promise((r) => setTimeout(r, 300));
    p.advance(200);
    p.finish();
    const lines = s.lines();
    expect(lines[1]).toMatch(/^x 1% 1\.9K\/98K 2\/100 files \S+\/s$/);
    expect(lines[2]).toMatch(/^x 2% 2\.1K\/98K 3\/100 files \S+\/s ETA \d+s$/);
  });

  it('an exact total the work has passed (a count that missed some) turns into an estimate', () => {
    const s = screen();
    const board = new ProgressBoard({ x: { bytes: 100, files: 1, estimated: false } }, s.status);
    const p = board.item('x');
    p.advance(150, 2);
    p.finish();
    const lines = s.lines();
    expect(lines[0]).toBe('x ~99% 150B/~150B 2 files');
    expect(lines.at(-1)).toMatch(/^x 100% 150B\/150B 2 files \S+\/s$/);
  });

  it('cuts a line to the terminal width rather than letting it wrap', () => {
    const s = screen(40);
    const board = new ProgressBoard(
      { a: { bytes: 100, estimated: false }, b: { bytes: 100, estimated: false } },
      s.status,
    );
    const p = board.item('a');
    p.advance(50);
    p.finish();
    for (const l of s.lines()) expect(l.length).toBeLessThanOrEqual(40);
    expect(s.lines().at(-1)).toMatch(/…$/);
  });
});
