import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { execCapture } from '../docker/exec.js';

/**
 * Shell function `val NAME` for the credential preludes: $NAME, else the contents of the file that
 * $NAME_FILE names (Docker secrets), else empty.
 */
export const ENV_OR_FILE = `val() { eval "v=\\"\\\${$1:-}\\""; eval "f=\\"\\\${$1_FILE:-}\\""; if [ -z "$v" ] && [ -n "$f" ] && [ -r "$f" ]; then v=$(cat "$f"); fi; printf %s "$v"; }`;

/**
 * Runs a query command in the database container and returns its output; a failure is DUMP_FAILED naming
 * `where` ("the database container") and the variables to check (`hint`).
 */
export async function runQuery(
  docker: Docker,
  container: string,
  cmd: string[],
  timeoutMs: number,
  where: string,
  hint: string,
): Promise<string> {
  const r = await execCapture(docker, container, cmd, timeoutMs);
  if (r.exitCode !== 0) {
    throw new SidecarError(
      'DUMP_FAILED',
      `query in ${where} failed (exit ${r.exitCode}): ${r.stderr.trim().slice(-300)}`,
      hint,
    );
  }
  return r.stdout;
}
