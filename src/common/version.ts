import { readFileSync } from 'node:fs';

/** Name and version of this tool, read once from package.json (recorded in every manifest). */
function readTool(): { name: string; version: string } {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'moodle-backup-sidecar') return { name: pkg.name, version: pkg.version ?? '0.0.0' };
    } catch {
      // try the next location (src/ in dev, dist/ when built)
    }
  }
  return { name: 'moodle-backup-sidecar', version: '0.0.0' };
}

export const TOOL = readTool();
