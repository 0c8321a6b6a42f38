import { describe, expect, it } from 'vitest';
import { listedInto, parseListed, type UntarredMember } from '../../../src/store/pack-untar.js';

const SHA = 'a94a8fe5ccb19ba61c4c0873d391e987982fbbd3';
const line = (s: string) => {
  const b = Buffer.from(s);
  return parseListed(b, 0, b.length);
};

describe("tar -xvv's listing read as bytes", () => {
  it('reads mode, owner, size and time of a regular file, and its SHA-1 from the end of its name', () => {
    expect(line(`-rw-r----- 33/33        1234 2026-12-06 08:13:05 filedir/a9/4a/${SHA}`)).toEqual({
      sha1: SHA,
      member: { mode: 0o640, uid: 33, gid: 33, size: 1234, mtimeS: Date.UTC(2026, 11, 6, 8, 13, 5) / 1000 },
    });
    // A flat unpack lists the transformed name; big ids, a zero size, an old time.
    expect(line(`-rwxr-xr-x 4294967294/70000 0 1970-01-01 00:00:01 ${SHA}`)?.member).toEqual({
      mode: 0o755,
      uid: 4294967294,
      gid: 70000,
      size: 0,
      mtimeS: 1,
    });
  });

  it('set-id and sticky bits show in the execute columns, with or without the execute bit', () => {
    const mode = (rwx: string) => line(`-${rwx} 0/0 1 2026-01-02 03:04:05 ${SHA}`)?.member.mode;
    expect(mode('rwsr-sr-t')).toBe(0o7755);
    expect(mode('rwSr-Sr-T')).toBe(0o7644);
    expect(mode('---------')).toBe(0);
  });

  it('any other line is not a member: directories, links, warnings, a cut or malformed line', () => {
    for (const other of [
      `drwxr-x--- 33/33 0 2026-12-06 08:13:05 filedir/a9/4a/`,
      `hrw-r----- 33/33 0 2026-12-06 08:13:05 filedir/a9/4a/${SHA} link to x`,
      'tar: filedir/a9/4a/x: Not found in archive',
      `-rw-r----- 33/33 1234 2026-12-06 08:13 filedir/a9/4a/${SHA}`,
      `-rw-r--x-s 33/33 1234 2026-12-06 08:13:05 filedir/a9/4a/${SHA}`,
      `-rw-r----- 33/x3 1234 2026-12-06 08:13:05 filedir/a9/4a/${SHA}`,
      `-rw-r----- 33/33 1234 2026-12-06 08:13:05 short`,
      '',
    ])
      expect(line(other), other).toBeNull();
  });

  it('the same members whatever the chunks the listing arrives in', () => {
    const lines = [0, 1, 2, 3].map(
      (i) =>
        `-rw-r----- ${i}/${i} ${i * 1000} 2026-12-0${i + 1} 0${i}:00:00 filedir/aa/bb/${String(i).repeat(40)}\n`,
    );
    const text = Buffer.from(`tar: a warning\n${lines.join('')}`);
    const whole = new Map<string, UntarredMember>();
    listedInto(whole)(text);
    expect(whole.size).toBe(4);
    for (let cut = 1; cut < text.length; cut++) {
      const m = new Map<string, UntarredMember>();
      const push = listedInto(m);
      push(text.subarray(0, cut));
      push(text.subarray(cut));
      expect(m, `cut at ${cut}`).toEqual(whole);
    }
    // One byte at a time.
    const m = new Map<string, UntarredMember>();
    const push = listedInto(m);
    for (let i = 0; i < text.length; i++) push(text.subarray(i, i + 1));
    expect(m).toEqual(whole);
  });
});
