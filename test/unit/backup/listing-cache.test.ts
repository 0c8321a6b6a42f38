import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListingDraft, listingDir, loadListing } from '../../../src/backup/listing-cache.js';
import { LocalBackend } from '../../../src/storage/local.js';

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
    await draft.install('s1', 1234, new Map([['filedir/ab/cd', 99]]), ['filedir/ab/cd'], totals);
    const got = await loadListing(dir, 'moodledata_data', backend);
    expect(got).toMatchObject({ snapshot: 's1', sinceMs: 1234, mixed: ['filedir/ab/cd'], totals });
    expect(new Map(got?.stamps)).toEqual(new Map([['filedir/ab/cd', 99]]));

    // A failed run's draft goes and the installed listing stays; the next install replaces its files.
    const failed = await ListingDraft.open(dir, 'moodledata_data');
    await failed.add('x\n');
    await failed.discard();
    expect((await loadListing(dir, 'moodledata_data', backend))?.snapshot).toBe('s1');
    const next = await ListingDraft.open(dir, 'moodledata_data');
    await commit('s2');
    await next.install('s2', 5678, new Map(), [], totals);
    expect((await loadListing(dir, 'moodledata_data', backend))?.snapshot).toBe('s2');
    expect((await readdir(dir)).length).toBe(3); // the pointer, the lines, the stamps

    // Its snapshot deleted (prune, or by hand): its blobs may be gone, so it is not used.
    await backend.delete('s2/manifest.json');
    expect(await loadListing(dir, 'moodledata_data', backend)).toBeUndefined();
  });
});
