import { describe, expect, it } from 'vitest';
import { tarExcludeArgs } from '../../../src/volume/exclude-tar-args.js';

/** The rule → GNU tar option mapping; what tar then does with it is checked in dir-tar-compressed.test.ts. */
describe('tarExcludeArgs', () => {
  it('anchors every rule at ./, keeps `dir/` entries and escapes what fnmatch would read as a pattern', () => {
    expect(tarExcludeArgs(['cache/', './moodle-cron.log', '/*/cache/', 'a?b[c]\\d'])).toEqual([
      '--anchored',
      '--no-wildcards-match-slash',
      '--exclude=./cache/*',
      '--exclude=./moodle-cron.log',
      '--exclude=./*/cache/*',
      '--exclude=./a\\?b\\[c\\]\\\\d',
    ]);
  });

  it('no rules: no options', () => {
    expect(tarExcludeArgs([])).toEqual([]);
  });

  it('refuses rules that config validation refuses, instead of guessing', () => {
    for (const rule of ['../etc', '*', 'a//b', '/'])
      expect(() => tarExcludeArgs([rule])).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
