import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  currentOwner,
  isSelf,
  type Owner,
  ownerLabel,
  ownerLiveness,
  ownerOf,
  parseOwnerLabel,
  parsePidNs,
  parseStartTime,
} from '../../../src/common/owner.js';

/** A real /proc/<pid>/stat line shape: 52 fields, field 22 (start time) = 987654. */
function statLine(comm: string, start = '987654'): string {
  const after = Array.from({ length: 50 }, (_, i) => String(i + 3));
  after[0] = 'S';
  after[19] = start; // field 22
  return `4242 (${comm}) ${after.join(' ')}\n`;
}

/** The built module (the test run's global setup builds dist/ from the current sources). */
const BUILT_OWNER = fileURLToPath(new URL('../../../dist/common/owner.js', import.meta.url));

/**
 * A process in a PID namespace of its own (as a sidecar container is), where it is PID 1, reporting its
 * identity as it would write it into a label or lock. Ends when `stop` is called.
 */
async function otherNamespace(): Promise<{ owner: Owner; stop: () => Promise<void> }> {
  const script = `import(${JSON.stringify(BUILT_OWNER)}).then((m) => { console.log(JSON.stringify(m.currentOwner())); setInterval(() => {}, 1000); })`;
  // --kill-child: the namespace's process dies with unshare, also when unshare is killed.
  const child = spawn(
    'unshare',
    ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, '-e', script],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = once(child, 'exit');
  const [line] = (await Promise.race([
    once(createInterface({ input: child.stdout }), 'line'),
    exited.then(([code]) => {
      throw new Error(`unshare exited ${code} before the child reported its identity`);
    }),
  ])) as string[];
  return {
    owner: JSON.parse(line as string) as Owner,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('owner identity (PID + start time + boot id + PID namespace)', () => {
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
    expect(me.pidNs).toBe(parsePidNs(readlinkSync('/proc/self/ns/pid')));
    expect(me.pidNs).toMatch(/^\d+$/);
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

  it('reads the namespace inode from its /proc link', () => {
    expect(parsePidNs('pid:[4026531836]')).toBe('4026531836');
    expect(parsePidNs('pid:[4026531836]\n')).toBe('4026531836');
    for (const bad of ['', 'net:[4026531836]', 'pid:[]', 'pid:[12a]', '4026531836'])
      expect(parsePidNs(bad), bad).toBeUndefined();
  });

  it('a process in another PID namespace of this host is neither us nor judged by its PID here', async () => {
    const other = await otherNamespace();
    try {
      const o = other.owner;
      const me = currentOwner();
      // What a host-network sidecar writes: the machine's host name and boot, PID 1 of its own namespace.
      expect(o.host).toBe(me.host);
      expect(o.bootId).toBe(me.bootId);
      expect(o.pid).toBe(1);
      expect(o.pidNs).toMatch(/^\d+$/);
      expect(o.pidNs).not.toBe(me.pidNs);
      // PID 1 runs here too, started at another time: judged by the PID, the live process would count as
      // dead and its helpers and lock as free to take. Its namespace says it cannot be told from here.
      expect(ownerLiveness(o)).toBe('foreign');
      expect(isSelf(o)).toBe(false);
      expect(isSelf({ ...me, pidNs: o.pidNs })).toBe(false);
      // An identity written before the namespace was recorded keeps the old rule: its PID, here.
      const { pidNs: _, container: __, ...old } = o;
      expect(ownerLiveness(old)).toBe('dead');
      expect(parseOwnerLabel(ownerLabel(o))).toEqual(o);
    } finally {
      await other.stop();
    }
  });

  it('the same container in another PID namespace ran before a restart: dead; another container: foreign', () => {
    const me = currentOwner();
    const id = (c: string) => c.repeat(64);
    const restarted: Owner = { ...me, container: id('a') };
    const before: Owner = { ...me, pid: 18, pidNs: '4026530001', container: id('a') };
    expect(ownerLiveness(before, restarted)).toBe('dead');
    expect(isSelf(before, restarted)).toBe(false);
    expect(ownerLiveness({ ...before, container: id('b') }, restarted)).toBe('foreign');
    expect(ownerLiveness({ host: me.host, pid: 18, pidNs: '4026530001' }, restarted)).toBe('foreign');
    expect(ownerLiveness(before, { ...restarted, host: 'elsewhere' })).toBe('foreign');
  });

  it('helper labels: the new form round-trips, the older forms still parse, junk does not', () => {
    const me = currentOwner();
    expect(parseOwnerLabel(ownerLabel(me))).toEqual(me);
    expect(ownerLabel(me).split(':')).toHaveLength(6);
    const inContainer: Owner = { ...me, container: 'c'.repeat(64) };
    expect(parseOwnerLabel(ownerLabel(inContainer))).toEqual(inContainer);
    expect(parseOwnerLabel('abc123:17')).toEqual({ host: 'abc123', pid: 17 });
    expect(parseOwnerLabel('abc123:17:900:boot-1')).toEqual({
      host: 'abc123',
      pid: 17,
      startTime: '900',
      bootId: 'boot-1',
    });
    const { pidNs: _, container: __, ...fourParts } = me;
    expect(ownerLabel(fourParts).split(':')).toHaveLength(4);
    for (const bad of [
      undefined,
      '',
      'abc',
      'abc:x',
      'abc:0',
      'abc:1:2',
      'abc:1:x:boot',
      ':5',
      'abc:1:2:boot:x:',
      'abc:1:2:boot:5:notanid',
      'abc:1:2:boot:5',
    ])
      expect(parseOwnerLabel(bad), String(bad)).toBeUndefined();
  });
});
