import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileTime } from '../../../src/common/file-time.js';
import { blobPath } from '../../../src/store/layout.js';
import { END_OF_ARCHIVE, fileHeader, padding } from '../../../src/store/tar-header.js';
import { type PackEntry, readPackTar } from '../../../src/store/tar-reader.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mbs-tarhdr-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const text = 'a scan dated 1960';
const sha1 = createHash('sha1').update(text).digest('hex');
const JAN_1960_MS = -315_619_200_000;

async function entries(tar: Buffer): Promise<PackEntry[]> {
  const out: PackEntry[] = [];
  await readPackTar(Readable.from([tar]), 'test', async (e) => {
    out.push(e);
  });
  return out;
}

describe('pack tar headers with times before 1970 and sizes past octal', () => {
  it('the writer’s header of a negative mtime is base-256, as GNU tar reads it, and reads back', async () => {
    const f = {
      name: blobPath(sha1),
      size: text.length,
      mode: 0o640,
      uid: 1001,
      gid: 1001,
      mtimeMs: JAN_1960_MS,
    };
    const tar = Buffer.concat([fileHeader(f), Buffer.from(text), padding(text.length), END_OF_ARCHIVE]);
    writeFileSync(join(dir, 'p.tar'), tar);
    const listed = execFileSync('tar', ['-tv', '--full-time', '--numeric-owner', '-f', join(dir, 'p.tar')], {
      env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' },
    }).toString();
    expect(listed).toMatch(
      new RegExp(`^-rw-r----- 1001/1001 +${text.length} 1960-01-01 00:00:00 ${blobPath(sha1)}$`, 'm'),
    );
    const { name: _, ...rest } = f;
    expect(await entries(tar)).toEqual([{ ...rest, sha1, offset: 512 }]);
  });

  it('reads GNU tar’s own header of a file dated 1960', async () => {
    const at = join(dir, 'src', blobPath(sha1));
    mkdirSync(join(at, '..'), { recursive: true });
    writeFileSync(at, text);
    utimesSync(at, fileTime(JAN_1960_MS), fileTime(JAN_1960_MS));
    execFileSync('tar', ['-C', join(dir, 'src'), '-cf', join(dir, 'g.tar'), '--format=gnu', blobPath(sha1)]);
    const [e] = await entries(readFileSync(join(dir, 'g.tar')));
    expect(e).toMatchObject({ sha1, size: text.length, mtimeMs: JAN_1960_MS, offset: 512 });
  });
});
