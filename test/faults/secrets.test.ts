import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { generateIdentity } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { type CliResult, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { killLive, startCli } from '../harness/live.js';
import { createTestBucket, s3Env, s3Host } from '../harness/s3.js';
import { freePort } from '../harness/s3-server.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';
import { Figures } from './figures.js';

/**
 * Secrets never reach a log: a full run (scheduled backup through `serve` with a success webhook, `snapshots`,
 * `verify`, `restore`) with every kind of secret configured — S3 keys, an age passphrase and identity, a
 * webhook URL with a token — at debug log level; then every line of stdout and stderr is searched for each.
 * Also the modes of what the sidecar writes locally: archives 0600, directories 0700.
 */
describe('secrets and permissions', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let bucket: string;
  let hook: Server;
  const posts: { url: string; body: string }[] = [];
  const outputs: { what: string; r: CliResult }[] = [];
  const figures = new Figures('secrets', 'clean');
  const token = `tok${randomBytes(12).toString('hex')}`;
  const passphrase = `pass-${randomBytes(12).toString('hex')}`;
  let identity: string;

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 1, users: 100, logs: 200 } }),
      tempDirs('secrets'),
      createTestBucket('secrets'),
    ]);
    identity = await generateIdentity();
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        posts.push({ url: req.url ?? '', body });
        res.writeHead(204).end();
      });
    });
    hook.listen(0, '127.0.0.1');
    await once(hook, 'listening');
  });
  afterAll(async () => {
    killLive();
    figures.save();
    hook?.closeAllConnections();
    hook?.close();
    await stack?.remove();
    await dirs?.remove();
  });

  async function env(): Promise<NodeJS.ProcessEnv> {
    const passFile = join(dirs.root, 'age-pass');
    await writeFile(passFile, `${passphrase}\n`, { mode: 0o600 });
    const idFile = join(dirs.root, 'age-identity');
    await writeFile(idFile, `${identity}\n`, { mode: 0o600 });
    return s3Env(stack, dirs, bucket, s3Host(), {
      BACKUP_VOLUMES: 'moodle_data',
      BACKUP_AGE_PASSPHRASE_FILE: passFile,
      BACKUP_AGE_IDENTITY_FILE: idFile,
      BACKUP_WEBHOOK_URL: `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook/${token}`,
      BACKUP_NOTIFY_ON: 'success',
      LOG_LEVEL: 'debug',
    });
  }

  // One counted case per scenario, from the first command to the last check: a failed run cannot look clean.
  figures.it(
    'a full run at debug level: no secret in any stdout or stderr line, nor in the webhook body',
    async () => {
      const e = await env();
      const port = await freePort();
      // Scheduled backup through serve, with the success webhook.
      const serve = startCli(
        ['serve'],
        {
          ...e,
          BACKUP_CRON_EXPRESSION: '*/3 * * * * *',
          BACKUP_HEALTH_HOST: '127.0.0.1',
          BACKUP_HEALTH_PORT: String(port),
        },
        240_000,
      );
      await serve.waitFor(
        'a success webhook',
        () => posts.some((p) => p.body.includes('"success"')),
        180_000,
      );
      serve.child.kill('SIGTERM');
      outputs.push({ what: 'serve', r: await serve.exited });
      for (const args of [
        ['snapshots', '--json'],
        ['verify', 'latest'],
        ['restore', 'latest', '--yes'],
      ]) {
        const r = await runCli(args, e, { timeoutMs: 240_000 });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        outputs.push({ what: args.join(' '), r });
      }
      // A failing run logs its error too: a wrong passphrase.
      const wrong = await runCli(['verify', 'latest'], {
        ...e,
        BACKUP_AGE_PASSPHRASE_FILE: '',
        BACKUP_AGE_PASSPHRASE: 'not-it-xyz',
        BACKUP_AGE_IDENTITY_FILE: '',
      });
      expect(wrong.code).toBe(2);
      outputs.push({ what: 'verify (wrong key)', r: wrong });

      const s3 = inject('s3');
      const secrets: Record<string, string> = {
        'S3 access key id': s3.accessKeyId,
        'S3 secret key': s3.secretAccessKey,
        'age passphrase': passphrase,
        'age identity': identity,
        'webhook token': token,
      };
      expect(posts[0]?.url).toBe(`/hook/${token}`);
      const lines = outputs.flatMap(({ what, r }) =>
        `${r.stdout}\n${r.stderr}`.split('\n').map((line) => ({ what, line })),
      );
      expect(lines.length).toBeGreaterThan(20);
      for (const [name, secret] of Object.entries(secrets)) {
        const leaks = lines
          .filter((l) => l.line.includes(secret))
          .map((l) => `${l.what}: ${l.line.slice(0, 200)}`);
        expect(leaks, `${name} appears in the output`).toEqual([]);
        expect(
          posts.some((p) => p.body.includes(secret)),
          `${name} in a webhook body`,
        ).toBe(false);
      }
    },
    420_000,
  );

  figures.it(
    'local archives are 0600 in 0700 directories; state and spool directories are 0700',
    async () => {
      const target = join(dirs.root, 'archive-modes');
      const e = cliEnv(stack.project, dirs, {
        BACKUP_ARCHIVE: target,
        BACKUP_VOLUMES: 'moodle_data',
        BACKUP_SPOOL: 'always',
      });
      const r = await runCli(['backup', '--json'], e, { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      const mode = async (p: string) => ((await stat(p)).mode & 0o777).toString(8);
      expect(await mode(target)).toBe('700');
      expect(await mode(join(target, id))).toBe('700');
      for (const f of await readdir(join(target, id)))
        expect(`${f} ${await mode(join(target, id, f))}`).toBe(`${f} 600`);
      expect(await mode(dirs.state)).toBe('700');
      expect(await mode(dirs.spool)).toBe('700');
    },
  );
});
