import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { parseCheck } from '../database/mariadb-check.js';
import { execCapture } from '../docker/exec.js';
import { type ScratchServer, withScratchServer } from './scratch-server.js';
import type { VerifyOptions } from './types.js';

/** `sh -c` prelude that runs the first tool present of two (mariadb-* names, else the older mysql* ones). */
const EITHER =
  'a=$1; b=$2; shift 2; if command -v "$a" >/dev/null 2>&1; then exec "$a" "$@"; fi; exec "$b" "$@"';

/** The image's own command with `--skip-grant-tables`: the drill cannot know the root password. */
const MARIADB: ScratchServer = {
  engine: 'MariaDB',
  container: (info) => ({
    Cmd: [...(info.Config?.Cmd ?? []), '--skip-grant-tables'],
    // Bitnami's entrypoint refuses to start without a root password unless told an empty one is fine.
    Env: ['ALLOW_EMPTY_PASSWORD=yes'],
  }),
  ready: ['sh', '-c', EITHER, 'drill', 'mariadb-admin', 'mysqladmin', '-uroot', 'ping'],
  answer: 'answer ping',
  pollMs: 500,
};

/**
 * Starts the snapshot's own MariaDB image (as container `name`) on the scratch volume and requires every
 * table to check OK.
 */
export async function checkDatabase(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  scratch: string,
  name: string,
): Promise<string> {
  return withScratchServer(o, m, v, scratch, name, MARIADB, async (container, image) => {
    const tables = await checkTables(o, container, v);
    return `mariadb-check: ${tables} tables OK (${image})`;
  });
}

/** Runs mariadb-check on every table; returns how many were checked, or throws naming the bad ones. */
async function checkTables(o: VerifyOptions, container: string, v: ManifestVolume): Promise<number> {
  const r = await execCapture(
    o.docker,
    container,
    ['sh', '-c', EITHER, 'drill', 'mariadb-check', 'mysqlcheck', '-uroot', '--all-databases'],
    o.dbCheckTimeoutMs ?? 30 * 60_000,
  );
  if (r.exitCode !== 0) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name}: mariadb-check exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-400)}`,
    );
  }
  const { tables, bad } = parseCheck(r.stdout);
  if (tables === 0) {
    throw new SidecarError('INTEGRITY_FAILED', `volume ${v.name}: mariadb-check listed no tables`);
  }
  if (bad.length > 0) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name}: ${bad.length} of ${tables} tables failed mariadb-check: ${bad.slice(0, 5).join('; ')}`,
    );
  }
  return tables;
}
