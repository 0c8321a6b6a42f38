import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExcludeStats } from '../archive/tar-exclude.js';
import { type ExcludeRule, excludeMatcher, parseRule } from '../config/exclude-rules.js';

/**
 * What the exclude rules leave out of a directory, counted the way TarExclude counts dropped tar entries:
 * one entry per file, directory, link or device below (and including) a matched path; bytes are the bodies a
 * tar would have carried (regular files' sizes; a second name of the same inode is a body-less hard link).
 * Used when GNU tar applies the rules itself (exclude-tar-args.ts) and the manifest still has to say what was
 * left out. Only directories that can hold a match are walked: the rules' depth bounds the search, and a
 * matched subtree is walked once to count it. Symlinks are never followed.
 */
export async function countExcluded(dir: string, rules: ExcludeRule[]): Promise<ExcludeStats> {
  const stats: ExcludeStats = { entries: 0, bytes: 0 };
  if (rules.length === 0) return stats;
  const excluded = excludeMatcher(rules);
  // `a/b` matches at depth 2; `a/b/` first matches its children, at depth 3.
  const depth = Math.max(
    ...rules.map((r) => {
      const { path, contentsOnly } = parseRule(r);
      return path.split('/').length + (contentsOnly ? 1 : 0);
    }),
  );
  const seenInodes = new Set<string>();

  const count = async (path: string): Promise<void> => {
    const st = await lstat(path).catch(vanished);
    if (!st) return;
    stats.entries++;
    if (st.isFile()) {
      const inode = `${st.dev}:${st.ino}`;
      if (st.nlink < 2 || !seenInodes.has(inode)) stats.bytes += st.size;
      if (st.nlink > 1) seenInodes.add(inode);
    } else if (st.isDirectory()) {
      for (const name of (await readdir(path).catch(vanished)) ?? []) await count(join(path, name));
    }
  };

  const search = async (rel: string, level: number): Promise<void> => {
    for (const e of (await readdir(join(dir, rel), { withFileTypes: true }).catch(vanished)) ?? []) {
      const child = rel ? `${rel}/${e.name}` : e.name;
      if (excluded(child)) await count(join(dir, child));
      else if (e.isDirectory() && level < depth) await search(child, level + 1);
    }
  };
  await search('', 1);
  return stats;
}

/**
 * A path removed while it is counted (`online` mode: Moodle keeps writing sessions and caches) is simply not
 * there, for the count as for tar; any other error fails the count, and with it the backup.
 */
function vanished(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
  throw err;
}
