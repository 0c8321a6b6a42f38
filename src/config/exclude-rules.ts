/**
 * Exclusion rules are paths relative to the volume root, `*` matching within one path segment:
 *  - `cache/` (trailing slash): the directory's contents are dropped, the directory entry itself is kept, so
 *    a restore (even with plain tar) recreates it empty with its owner, mode and mtime;
 *  - `moodle-cron.log` (no slash): that file, or that directory with everything below it, is dropped.
 */
export type ExcludeRule = string;

/** A rule's path without leading `./` or `/` and trailing `/`; `contentsOnly` for a rule written `dir/`. */
export function parseRule(rule: ExcludeRule): { path: string; contentsOnly: boolean } {
  const clean = rule.replace(/^(\.\/|\/)+/, '');
  return { path: clean.replace(/\/+$/, ''), contentsOnly: clean.endsWith('/') };
}

/** Compiles rules into one predicate over normalised relative paths (no `./`, no trailing `/`). */
export function excludeMatcher(rules: ExcludeRule[]): (path: string) => boolean {
  const regexes = rules.map((rule) => {
    const { path, contentsOnly } = parseRule(rule);
    const body = path
      .split('/')
      .map((seg) => seg.split('*').map(escapeRegex).join('[^/]*'))
      .join('/');
    return new RegExp(contentsOnly ? `^${body}/.+$` : `^${body}(/.*)?$`);
  });
  return (path) => path !== '' && regexes.some((r) => r.test(path));
}

/** Checks rules for what would make them unsafe or meaningless; returns a message per bad rule. */
export function invalidExcludeRules(rules: ExcludeRule[]): string[] {
  const bad: string[] = [];
  for (const r of rules) {
    const clean = parseRule(r).path;
    if (clean === '' || clean === '*') bad.push(`"${r}" would exclude the whole volume`);
    else if (clean.split('/').some((s) => s === '..' || s === '.' || s === ''))
      bad.push(`"${r}" is not a plain relative path`);
  }
  return bad;
}

function escapeRegex(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}
