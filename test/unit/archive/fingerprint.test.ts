import { describe, expect, it } from 'vitest';
import { type ArchiveRecipe, archiveFingerprint } from '../../../src/archive/fingerprint.js';

const LISTING = 'a'.repeat(64);
const RECIPE: ArchiveRecipe = { excluded: [], codec: 'zstd', level: undefined, recipients: null };
const X = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
const Y = 'age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg';

describe('archiveFingerprint', () => {
  it('is a sha256, the same for the same listing and recipe', () => {
    const f = archiveFingerprint(LISTING, RECIPE);
    expect(f).toMatch(/^[0-9a-f]{64}$/);
    expect(archiveFingerprint(LISTING, { ...RECIPE })).toBe(f);
  });

  it.each<[string, string, ArchiveRecipe]>([
    ['the listing', 'b'.repeat(64), RECIPE],
    ['the excludes', LISTING, { ...RECIPE, excluded: ['cache/'] }],
    ['the codec', LISTING, { ...RECIPE, codec: 'gzip' }],
    ['the level', LISTING, { ...RECIPE, level: 19 }],
    ['encryption on', LISTING, { ...RECIPE, recipients: [X] }],
  ])('changes with %s', (_what, listing, recipe) => {
    expect(archiveFingerprint(listing, recipe)).not.toBe(archiveFingerprint(LISTING, RECIPE));
  });

  it('compares recipients as a set, and tells other recipients apart', () => {
    const xy = archiveFingerprint(LISTING, { ...RECIPE, recipients: [X, Y] });
    expect(archiveFingerprint(LISTING, { ...RECIPE, recipients: [Y, X] })).toBe(xy);
    expect(archiveFingerprint(LISTING, { ...RECIPE, recipients: [X] })).not.toBe(xy);
    expect(archiveFingerprint(LISTING, { ...RECIPE, recipients: [Y] })).not.toBe(
      archiveFingerprint(LISTING, { ...RECIPE, recipients: [X] }),
    );
  });

  it('tells the default level from an explicit one', () => {
    expect(archiveFingerprint(LISTING, { ...RECIPE, level: 3 })).not.toBe(
      archiveFingerprint(LISTING, RECIPE),
    );
  });
});
