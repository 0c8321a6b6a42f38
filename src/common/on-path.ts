import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const found = new Map<string, boolean>();

/**
 * Whether an executable of that name is on PATH: a stat per PATH entry, once per process. A probe run of the
 * tool (`zstd --version`) was a synchronous spawn of ~6–11 ms on every backup's start.
 */
export function onPath(command: string): boolean {
  let known = found.get(command);
  if (known === undefined) {
    known = (process.env.PATH ?? '')
      .split(delimiter)
      .some((dir) => dir !== '' && isExecutable(join(dir, command)));
    found.set(command, known);
  }
  return known;
}

function isExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
