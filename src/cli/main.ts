#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { describeError, EXIT_CODES, SidecarError } from '../common/errors.js';
import { TOOL } from '../common/version.js';
import { stderrStatus } from '../observe/terminal.js';
import { registerBackup } from './backup.js';
import { registerPrune } from './prune.js';
import { registerRestore } from './restore.js';
import { registerServe } from './serve.js';
import { registerSnapshots } from './snapshots.js';
import { registerVerify } from './verify.js';

/** Entry point: one file per verb registers itself; errors become a message, a hint and a stable exit code. */
export async function main(argv: string[]): Promise<number> {
  quietSdkNodeNotice();
  const program = new Command()
    .name('moodle-backup')
    .description('Backup sidecar for Moodle on Docker Compose')
    .version(TOOL.version)
    .exitOverride()
    .showHelpAfterError();
  registerBackup(program);
  registerSnapshots(program);
  registerRestore(program);
  registerVerify(program);
  registerPrune(program);
  registerServe(program);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : EXIT_CODES.USAGE;
    }
    const code = err instanceof SidecarError ? err.code : 'UNEXPECTED';
    stderrStatus().keep(); // end a progress line the failure interrupted
    process.stderr.write(`error [${code}]: ${describeError(err)}\n`);
    if (!(err instanceof SidecarError) && process.env.LOG_LEVEL === 'debug') console.error(err);
    return err instanceof SidecarError ? EXIT_CODES[err.code] : 1;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});

/**
 * The AWS SDK prints a multi-line notice to stderr on Node < 22 (its releases after January 2027 need Node
 * 22), which would break the one-JSON-object-per-line log. This version of the sidecar supports Node 20.15 and
 * later (README, "Quick start"); the image runs Node 22. `serve` says so once in its own log instead.
 */
function quietSdkNodeNotice(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}
