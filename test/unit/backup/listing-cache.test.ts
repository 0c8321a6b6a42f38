import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListingDraft, listingDir, loadListing, parseStamps } from '../../../src/backup/listing-cache.js';
import { LocalBackend } from '../../../src/storage/local.js';
import { LeafTable } from '../../../src/store/leaf-table.js';

describe('the last snapshot listing kept on the state volume', () => {
  let root: string;
  let backend: LocalBackend;
  let dir: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'listing-cache-'));
    backend = new LocalBackend(join(root, 'target'));
    dir = listingDir(join(root, 'state'), backend.location);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const commit = (id: string) => backend.put(`${id}/manifest.json`, Readable.from(['{}']));

  it('is used only once installed, and only while its snapshot is stored', async () => {
    expect(await loadListing(dir, 'moodledata_data', backend)).toBeUndefined();
    const draft = await ListingDraft.open(dir, 'moodledata_data');
    await draft.add('a line\n');
    // Not installed yet (the run has not committed): nothing to start from.
    expect(await loadListing(dir, 'moodledata_data', backend)).toBeUndefined();
    await commit('s1');
    const totals = { count: 1, bytes: 5, mismatches: [] };
    // Moodle's names and an odd one (kept by its name).
    const stamps = LeafTable.from([
      ['filedir/ab/cd', 99],
      ['trashdir/00/ff', 1_796_580_784_609],
      ['filedir/ab/Odd name', 7],
    ]);
    await draft.install('s1', 1234, stamps, ['filedir/ab/cd'], totals);
    const got = await loadListing(dir, 'moodledata_data', backend);
    expect(got).toMatchObject({ snapshot: 's1', sinceMs: 1234, mixed: ['filedir/ab/cd'], totals });
    expect(new Map(got?.stamps)).toEqual(new Map(stamps));

    // A failed run's draft goes and the installed listing stays; the next install replaces its files.
    const failed = await ListingDraft.open(dir, 'moodledata_data');
    await failed.add('x\n');
    await failed.discard();
    expect((await loadListing(dir, 'moodledata_data', backend))?.snapshot).toBe('s1');
    const next = await ListingDraft.open(dir, 'moodledata_data');
    await commit('s2');
    await next.install('s2', 5678, new LeafTable(), [], totals);
    expect((await loadListing(dir, 'moodledata_data', backend))?.snapshot).toBe('s2');
    expect((await readdir(dir)).length).toBe(3); // the pointer, the lines, the stamps

    // Its snapshot deleted (prune, or by hand): its blobs may be gone, so it is not used.
    await backend.delete('s2/manifest.json');
    expect(await loadListing(dir, 'moodledata_data', backend)).toBeUndefined();
  });

  it('leaves out a directory whose name a line cannot hold, and still reads back (the next run lists it as new)', async () => {
    const draft = await ListingDraft.open(dir, 'moodledata_data');
    await commit('s4');
    const stamps = LeafTable.from([
      ['filedir/ab/cd', 5],
      ['filedir/a\nb/cd', 6],
      ['filedir/ab/c\td', 7],
      ['trashdir/caf\uFFFD/cd', 8],
    ]);
    await draft.install('s4', 1, stamps, [], { count: 0, bytes: 0, mismatches: [] });
    const got = await loadListing(dir, 'moodledata_data', backend);
    expect(new Map(got?.stamps)).toEqual(new Map([['filedir/ab/cd', 5]]));
  });

  it('a damaged stamps file is not used (the backup then lists every file)', async () => {
    const draft = await ListingDraft.open(dir, 'moodledata_data');
    await commit('s3');
    await draft.install('s3', 1, LeafTable.from([['filedir/ab/cd', 5]]), [], {
      count: 0,
      bytes: 0,
      mismatches: [],
    });
    expect((await loadListing(dir, 'moodledata_data', backend))?.stamps.get('filedir/ab/cd')).toBe(5);
    const stampsFile = (await readdir(dir)).find((n) => n.endsWith('.stamps')) as string;
    for (const text of ['5\tfiledir/ab/cd', '5x\tfiledir/ab/cd\n', 'filedir/ab/cd\n']) {
      await writeFile(join(dir, stampsFile), text);
      expect(await loadListing(dir, 'moodledata_data', backend)).toBeUndefined();
    }
    expect(() => parseStamps(Buffer.from('12\tfiledir/ab/cd\n-1\tfiledir/ab/ce\n'))).toThrow(/malformed/);
    expect(parseStamps(Buffer.from('')).size).toBe(0);
  });
});
