import { SidecarError } from '../common/errors.js';
import { type ExcludeRule, invalidExcludeRules, parseRule } from '../config/exclude-rules.js';

/**
 * The exclude rules of tar-exclude.ts as GNU tar options, for when GNU tar reads a directory itself and the
 * tar bytes never reach Node. Same meaning, checked against TarExclude by test/integration/dir-tar-compressed.test.ts:
 *  - `cache/` → `./cache/*`: the directory entry stays, everything below it is left out;
 *  - `name` → `./name`: the entry is left out, and tar never descends into it when it is a directory.
 * `--anchored` ties a pattern to the start of the member name (`./…`), `--no-wildcards-match-slash` keeps `*`
 * within one path segment (as TarExclude's `[^/]*`), and tar's default recursion makes a match cover what
 * lies below. `*` matches dotfiles in both. Rule characters that fnmatch treats specially (`?`, `[`, `]`,
 * `\`) are literal in a rule, so they are escaped. Options only affect the `--exclude`s after them.
 *
 * One difference, on purpose: a hard link outside the excluded paths whose other name is excluded keeps its
 * data (tar stores it as a regular file); TarExclude, seeing only bytes, has to drop it with its target.
 */
export function tarExcludeArgs(rules: ExcludeRule[]): string[] {
  const bad = invalidExcludeRules(rules);
  // Config validation refuses these before a run starts; a caller that skipped it must not get a guess.
  if (bad.length > 0)
    throw new SidecarError(
      'CONFIG_INVALID',
      `invalid exclude rules: ${bad.join('; ')}`,
      'fix the exclude setting',
    );
  if (rules.length === 0) return [];
  const args = ['--anchored', '--no-wildcards-match-slash'];
  for (const rule of rules) {
    const { path, contentsOnly } = parseRule(rule);
    const body = path.replace(/[?[\]\\]/g, '\\$&');
    args.push(`--exclude=./${body}${contentsOnly ? '/*' : ''}`);
  }
  return args;
}
