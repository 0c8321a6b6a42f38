import { createHash } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileTime } from '../../../src/common/file-time.js';
import { silentLogger } from '../../../src/observe/logger.js';
import { placeBlobs, verifyBlobs } from '../../../src/restore/blobs.js';
import { LocalBackend } from '../../../src/storage/local.js';
import { LeafTable } from '../../../src/store/leaf-table.js';
import { treeHashes } from '../../harness/dataroot.js';
import { Dataroot, snapshotDataroot } from '../../harness/store-target.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mbs-inplace-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const at = (area: string, h: string) => `${area}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;

function put(root: string, rel: string, content: string, mode: number, mtimeMs: number): void {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), content);
  chmodSync(join(root, rel), mode);
  utimesSync(join(root, rel), fileTime(mtimeMs), fileTime(mtimeMs));
}

describe('placeBlobs into a staging directory (packs unpacked in place)', () => {
  it('puts trashdir-only blobs, twins and a corrupt file at their snapshot paths, and the leaf directories, with their modes and times', async () => {
    const root = join(dir, 'data');
    const d = new Dataroot(root);
    await d.add(40, 3000);
    const t = 1_733_000_000_123;
    // Only in trashdir/, in filedir/ and trashdir/ with other modes and times, under a name not its hash.
    put(root, at('trashdir', sha1('trash only')), 'trash only', 0o600, t);
    put(root, at('trashdir', sha1('trash too')), 'trash too', 0o600, t + 3);
    put(root, at('filedir', sha1('twice')), 'twice', 0o640, t + 1_000);
    put(root, at('trashdir', sha1('twice')), 'twice', 0o604, t + 2_345);
    put(root, at('filedir', 'c0'.repeat(20)), 'corrupt', 0o644, t + 7);
    // Dated before 1970 (a negative time, which Node's utimes takes for "now" given as a number).
    put(root, at('filedir', sha1('from 1960')), 'from 1960', 0o644, -315_619_199_877);
    expect(Math.floor(lstatSync(join(root, at('filedir', sha1('from 1960')))).mtimeMs)).toBe(
      -315_619_199_877,
    );
    const backend = new LocalBackend(join(dir, 'target'));
    const s = await snapshotDataroot(backend, d, new Date(t), {
      packSize: 16 * 1024,
      spool: join(dir, 'spool'),
    });
    const store = await verifyBlobs(backend, s.manifest, s.manifest.volumes, undefined, silentLogger());
    const set = store?.sets.get('moodledata_data');
    if (!store || !set) throw new Error('no blobs');
    // Leaf directories as a format-2 list names them: one left empty, one with a name past tar's 100 bytes.
    mkdirSync(join(root, 'filedir', 'ee', 'ff'), { recursive: true });
    mkdirSync(join(root, 'trashdir', '0f', 'x'.repeat(120)), { recursive: true });
    const leaves = readdirSync(root, { recursive: true })
      .map(String)
      .filter((rel) => rel.split('/').length === 3 && lstatSync(join(root, rel)).isDirectory())
      .map((rel, k) => {
        chmodSync(join(root, rel), 0o750 + (k % 2) * 5);
        const mtimeMs = k === 1 ? -315_619_200_000 : t + 10 * k;
        utimesSync(join(root, rel), fileTime(mtimeMs), fileTime(mtimeMs));
        const st = lstatSync(join(root, rel));
        return {
          path: rel,
          mode: st.mode & 0o7777,
          uid: st.uid,
          gid: st.gid,
          mtimeMs: Math.trunc(st.mtimeMs),
        };
      });
    const into = join(dir, 'staging');
    mkdirSync(into);
    const table = new LeafTable();
    for (const l of leaves) table.set(l.path, 0, l);
    const r = await placeBlobs({ backend, store, set, dirs: table, into, live: null, staged: true });
    expect(r.fetched).toBe(set.length);
    const want = await treeHashes(root);
    expect(await treeHashes(into)).toEqual(want);
    for (const rel of want.keys()) {
      const a = lstatSync(join(root, rel));
      const b = lstatSync(join(into, rel));
      expect([b.mode, b.uid, b.gid, Math.trunc(b.mtimeMs), b.nlink], rel).toEqual([
        a.mode,
        a.uid,
        a.gid,
        Math.trunc(a.mtimeMs),
        1,
      ]);
    }
    for (const l of leaves) {
      const b = lstatSync(join(into, l.path));
      expect([b.isDirectory(), b.mode & 0o7777, b.uid, b.gid, Math.trunc(b.mtimeMs)], l.path).toEqual([
        true,
        l.mode,
        l.uid,
        l.gid,
        l.mtimeMs,
      ]);
    }
    // Nothing left at a place the snapshot does not have (tar was told where each one goes).
    expect(() => lstatSync(join(into, at('filedir', sha1('trash only'))))).toThrow();
    expect(() => lstatSync(join(into, at('filedir', sha1('corrupt'))))).toThrow();
  });
});
