import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { runInTerminal, terminalLines } from '../harness/pty.js';
import { createMoodleStack, type MoodleStack, VOLUME_NAMES } from '../harness/stack.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape character is what is looked for
const ESC = /\x1b\[/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: colour sequences, removed to measure widths
const SGR = /\x1b\[[0-9;]*m/g;

describe('output for a person at a terminal', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let env: NodeJS.ProcessEnv;
  /** The files the second backup's progress line counted for moodledata_data (GNU tar straight into zstd). */
  let backupCounted: string | undefined;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 200, blobKb: 16, bigMb: 8, users: 100, logs: 200 } }),
      tempDirs('tty'),
    ]);
    env = cliEnv(stack.project, dirs, { TERM: 'xterm' });
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('backup on a terminal: human log lines, no JSON, colour, progress per volume reaching 100%', async () => {
    const r = await runInTerminal(['backup'], env, { timeoutMs: 110_000 });
    expect(r.code, r.stdout).toBe(0);
    const lines = terminalLines(r.stdout);
    expect(
      lines.filter((l) => l.trimStart().startsWith('{')),
      r.stdout,
    ).toEqual([]);
    expect(r.stdout).toMatch(SGR); // coloured levels
    const plain = lines.map((l) => l.replace(SGR, ''));
    // Time, level, message, the fields that matter.
    expect(plain, r.stdout).toContainEqual(
      expect.stringMatching(
        // The duration reads "840 ms" below a second, "1.1 s" above (a loaded machine reads slower).
        /^\[\d\d:\d\d:\d\d\] INFO: read moodledata_data {2}\(\d+\.\d (KiB|MiB), (\d+ ms|\d+\.\d s)\)$/,
      ),
    );
    // zstd wrote the archive itself: its stored size comes once it is hashed and on disk, after the window.
    expect(plain, r.stdout).toContainEqual(
      expect.stringMatching(
        /^\[\d\d:\d\d:\d\d\] INFO: moodledata_data: moodledata_data\.tar\.zst hashed and written to disk {2}\(\d+\.\d (KiB|MiB) stored, (\d+ ms|\d+\.\d s)\)$/,
      ),
    );
    for (const v of VOLUME_NAMES) {
      expect(
        plain.some((l) => l.startsWith(`${v} 100% `)),
        `${v}\n${r.stdout}`,
      ).toBe(true);
    }
    // The run's last progress line: everything done.
    expect(
      plain.some((l) => /│ all 100% /.test(l)),
      r.stdout,
    ).toBe(true);
    // No snapshot before this one: the totals come from a size scan, an estimate marked "~" until the end.
    const progress = plain.filter((l) => l.includes('│ all '));
    const estimates = progress.filter((l) => /^\S+ ~\d+% \S+\/~/.test(l));
    const finals = progress.filter((l) => / 100% /.test(l));
    expect(estimates.length, r.stdout).toBeGreaterThan(0);
    expect(finals.length, r.stdout).toBe(progress.length - estimates.length);
    // Every progress line fits the 80-column terminal.
    for (const l of progress) expect(l.length, l).toBeLessThanOrEqual(80);
  });

  it('NO_COLOR=1: no escape code at all; the second backup takes its totals from the first snapshot', async () => {
    const r = await runInTerminal(['backup'], { ...env, NO_COLOR: '1' }, { timeoutMs: 110_000 });
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).not.toMatch(ESC);
    // The mount path pipes tar into zstd without Node seeing the entries: the count comes from tar itself.
    backupCounted = r.stdout.match(/^moodledata_data 100% .* (\d+) files /m)?.[1];
    expect(backupCounted, r.stdout).toBeDefined();
    const lines = terminalLines(r.stdout);
    expect(lines.filter((l) => l.trimStart().startsWith('{'))).toEqual([]);
    expect(
      lines.some((l) => /│ all 100% /.test(l)),
      r.stdout,
    ).toBe(true);
  });

  it('restore and verify --deep on a terminal: progress with the exact totals from the manifest', async () => {
    for (const args of [
      ['restore', 'latest', '--yes', '--no-safety-snapshot'],
      ['verify', 'latest', '--deep'],
    ]) {
      const r = await runInTerminal(args, { ...env, NO_COLOR: '1' }, { timeoutMs: 110_000 });
      expect(r.code, r.stdout).toBe(0);
      const lines = terminalLines(r.stdout);
      expect(lines.filter((l) => l.trimStart().startsWith('{'))).toEqual([]);
      const progress = lines.filter((l) => l.includes('│ all '));
      for (const v of VOLUME_NAMES) {
        expect(progress, `${args[0]} ${v}\n${r.stdout}`).toContainEqual(
          expect.stringMatching(new RegExp(`^${v} 100% `)),
        );
      }
      expect(progress.at(-1), r.stdout).toMatch(/│ all 100% /);
      // Known sizes: nothing is marked as an estimate.
      expect(progress.filter((l) => l.includes('~'))).toEqual([]);
      for (const l of progress) expect(l.length, l).toBeLessThanOrEqual(80);
      if (args[0] !== 'verify') continue;
      // The files the progress line counted are the files verify found in the archive.
      const counted = r.stdout.match(/^moodledata_data 100% .* (\d+) files /m)?.[1];
      const checked = r.stdout.match(/moodledata_data +archive +ok +sha256 ok, (\d+) files/)?.[1];
      expect(counted, r.stdout).toBeDefined();
      expect(counted).toBe(checked);
      // ... and the ones the backup that made this snapshot counted.
      expect(backupCounted).toBe(checked);
    }
  });

  it('--json on a terminal, and any run without one, logs JSON lines only and draws no progress', async () => {
    const piped = await runCli(['backup'], env, { timeoutMs: 110_000 });
    expect(piped.code, piped.stderr).toBe(0);
    const stderr = piped.stderr.split('\n').filter((l) => l !== '');
    expect(logLines(piped.stderr)).toHaveLength(stderr.length);
    expect(piped.stderr).not.toContain('%');
    const json = await runInTerminal(['snapshots', '--json'], env, { timeoutMs: 60_000 });
    expect(json.code, json.stdout).toBe(0);
    expect(JSON.parse(json.stdout.replace(/\r\n/g, '\n'))).toHaveLength(3);
  });

  it('snapshots, verify and prune --dry-run fit an 80-column terminal; --json gives everything', async () => {
    const list = JSON.parse((await runCli(['snapshots', '--json'], env, { timeoutMs: 60_000 })).stdout) as {
      id: string;
    }[];
    expect(list).toHaveLength(3);
    for (const args of [['snapshots'], ['verify', '--all'], ['prune', '--dry-run']]) {
      // Warnings only: the table is what is measured here, not log lines (which the terminal may wrap).
      const r = await runInTerminal(args, { ...env, LOG_LEVEL: 'warn' }, { timeoutMs: 110_000 });
      expect(r.code, r.stdout).toBe(0);
      const lines = r.stdout.replace(SGR, '').split(/\r?\n/);
      for (const l of lines) expect(l.length, `${args[0]}: ${l}`).toBeLessThanOrEqual(80);
      // Every snapshot is still there, by its full id (what restore and verify take).
      for (const { id } of list) expect(r.stdout, args[0]).toContain(id);
      if (args[0] === 'snapshots') {
        // The volumes wrapped onto lines of their own rather than being cut.
        for (const v of VOLUME_NAMES) expect(r.stdout).toMatch(new RegExp(`\\b${v}\\b`));
      }
    }
    for (const args of [
      ['verify', '--all', '--json'],
      ['prune', '--dry-run', '--json'],
    ]) {
      const r = await runCli(args, env, { timeoutMs: 110_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.stringify(JSON.parse(r.stdout))).toContain(list[0]?.id);
    }
  });
});
