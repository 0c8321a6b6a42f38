import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  currentOwner,
  isSelf,
  ownerLabel,
  ownerLiveness,
  ownerOf,
  parseOwnerLabel,
  parseStartTime,
} from '../../../src/common/owner.js';

/** A real /proc/<pid>/stat line shape: 52 fields, field 22 (start time) = 987654. */
function statLine(comm: string, start = '987654'): string {
  const after = Array.from({ length: 50 }, (_, i) => String(i + 3));
  after[0] = 'S';
  after[19] = start; // field 22
  return `4242 (${comm}) ${after.join(' ')}\n`;
}

describe('owner identity (PID + start time + boot id)', () => {
  it('reads field 22 after the last ")", whatever the command name holds', () => {
    expect(parseStartTime(statLine('node'))).toBe('987654');
    expect(parseStartTime(statLine('a) (b'))).toBe('987654');
    expect(parseStartTime(statLine(') ) 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21'))).toBe(
      '987654',
    );
    expect(parseStartTime('4242 (node S 1 2')).toBeUndefined();
    expect(parseStartTime('garbage')).toBeUndefined();
  });

  it('this process has a start time and a boot id here, and is itself', () => {
    const me = currentOwner();
    expect(me.pid).toBe(process.pid);
    expect(me.host).toBe(hostname());
    expect(me.startTime).toMatch(/^\d+$/);
    expect(me.bootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(isSelf(me)).toBe(true);
    expect(ownerLiveness(me)).toBe('alive');
  });

  it('a live child is alive; once it exited it is dead; a forged start time is dead', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid as number;
      const id = ownerOf(pid);
      expect(id.startTime).toMatch(/^\d+$/);
      expect(ownerLiveness(id)).toBe('alive');
      expect(isSelf(id)).toBe(false);
      // The PID exists, but it is not the process that wrote the identity (a PID reused after a restart).
      const forged = { ...id, startTime: String(BigInt(id.startTime as string) + 1n) };
      expect(ownerLiveness(forged)).toBe('dead');
      expect(ownerLiveness({ ...id, bootId: '00000000-0000-0000-0000-000000000000' })).toBe('dead');
      expect(ownerLiveness({ ...id, host: `not-${hostname()}` })).toBe('foreign');
      child.kill('SIGKILL');
      await once(child, 'exit');
      expect(ownerLiveness(id)).toBe('dead');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('old identities (no start time) are judged by the PID alone', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const pid = child.pid as number;
    expect(ownerLiveness({ host: hostname(), pid })).toBe('alive');
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(ownerLiveness({ host: hostname(), pid })).toBe('dead');
  });

  it('helper labels: the new form round-trips, the old `host:pid` still parses, junk does not', () => {
    const me = currentOwner();
    expect(parseOwnerLabel(ownerLabel(me))).toEqual(me);
    expect(parseOwnerLabel('abc123:17')).toEqual({ host: 'abc123', pid: 17 });
    for (const bad of [undefined, '', 'abc', 'abc:x', 'abc:0', 'abc:1:2', 'abc:1:x:boot', ':5'])
      expect(parseOwnerLabel(bad), String(bad)).toBeUndefined();
  });
});
