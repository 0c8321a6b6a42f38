import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { runCli } from '../harness/cli.js';
import { composeLabels } from '../harness/compose.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { seeded } from '../harness/live.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';
import { Figures } from './figures.js';

/**
 * Bad input, the configuration half of the hostile-input suite (the archive half, corrupt and hostile
 * snapshots, is test/integration/restore-safety.test.ts and counts into the same `hostile` figure): unknown
 * keys, wrong types, an invalid cron expression, a missing bucket or credentials, bad label values, and
 * seeded random garbage in typed variables. Each must exit 2 with an error naming the key, and nothing may be
 * stopped (checked in Docker's events).
 */
interface Case {
  name: string;
  env?: Record<string, string>;
  yaml?: string;
  command?: string[];
  /** What the message must say: the key, and what is wrong. */
  says: RegExp;
}

const FIXED: Case[] = [
  {
    name: 'unknown variable',
    env: { BACKUP_KEEP_DAYLY: '3' },
    says: /BACKUP_KEEP_DAYLY: unknown variable \(did you mean BACKUP_KEEP_DAILY\?\)/,
  },
  {
    name: 'wrong type (variable)',
    env: { BACKUP_KEEP_DAILY: 'seven' },
    says: /BACKUP_KEEP_DAILY: expected an integer/,
  },
  {
    name: 'unknown YAML key',
    yaml: 'retention:\n  keepDayly: 3\n',
    says: /retention\.keepDayly: unknown key \(did you mean keepDaily\?\)/,
  },
  {
    name: 'wrong type (YAML)',
    yaml: 'stopTimeoutSeconds: soon\n',
    says: /stopTimeoutSeconds: expected an integer/,
  },
  {
    name: 'YAML that does not parse',
    yaml: 'retention: [keepDaily: 3\n',
    says: /config\.yml:\d+:\d+: invalid YAML/,
  },
  {
    name: 'invalid cron expression',
    env: { BACKUP_CRON_EXPRESSION: '61 * * * *' },
    command: ['serve'],
    says: /BACKUP_CRON_EXPRESSION "61 \* \* \* \*" is not a cron expression/,
  },
  {
    name: 'missing bucket',
    env: { AWS_S3_PATH: 'moodle', BACKUP_ARCHIVE: '' },
    says: /target\.bucket: an S3 target needs a bucket.*selected by AWS_S3_PATH/,
  },
  {
    name: 'half the credentials',
    env: { AWS_S3_BUCKET_NAME: 'b', AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE', BACKUP_ARCHIVE: '' },
    says: /target\.secretAccessKey: required when the other half of the key pair is set/,
  },
  {
    name: 'unreadable credentials file',
    env: { AWS_S3_BUCKET_NAME: 'b', AWS_SECRET_ACCESS_KEY_FILE: '/nonexistent/secret', BACKUP_ARCHIVE: '' },
    says: /AWS_SECRET_ACCESS_KEY_FILE: cannot read \/nonexistent\/secret \(ENOENT\)/,
  },
  {
    name: 'compression level out of range',
    env: { BACKUP_COMPRESSION_LEVEL: '40' },
    says: /BACKUP_COMPRESSION_LEVEL: expected 1–19 for zstd, received 40/,
  },
  {
    name: 'not an age recipient',
    env: { BACKUP_AGE_RECIPIENTS: 'ssh-rsa AAAA' },
    says: /BACKUP_AGE_RECIPIENTS: expected an age recipient/,
  },
  {
    name: 'unsupported offen setting',
    env: { BACKUP_EXCLUDE_REGEXP: '\\.log$' },
    says: /BACKUP_EXCLUDE_REGEXP: offen\/docker-volume-backup setting not supported/,
  },
];

/** Typed variables and garbage that none of them accepts: the seed picks the pairs. */
const TYPED = [
  'BACKUP_KEEP_LAST',
  'BACKUP_KEEP_WEEKLY',
  'BACKUP_STOP_CONTAINER_TIMEOUT',
  'BACKUP_MODE',
  'BACKUP_COMPRESSION',
  'BACKUP_SPOOL',
  'BACKUP_HEALTH_PORT',
  'BACKUP_NOTIFY_ON',
  'LOG_LEVEL',
];
const GARBAGE = ['sometimes', '1.5', '-3', '12abc', '0x10', 'NaN', '∞', 'true false', '%%%'];

function fuzzCases(seed: number, n: number): Case[] {
  const rand = seeded(seed);
  const offset = Math.floor(rand() * TYPED.length);
  return Array.from({ length: n }, (_, i) => {
    const name = TYPED[(offset + i) % TYPED.length] as string;
    const value = GARBAGE[Math.floor(rand() * GARBAGE.length)] as string;
    return {
      name: `fuzz ${name}=${JSON.stringify(value)}`,
      env: { [name]: value },
      says: new RegExp(`${name}: expected `),
    };
  });
}

/** Labels whose values are wrong: refused before the backup stops anything. */
const BAD_LABELS: { label: string; value: string; says: RegExp }[] = [
  {
    label: 'moodle-backup.stop',
    value: 'ture',
    says: /label moodle-backup\.stop="ture": expected true or false/,
  },
  {
    label: 'moodle-backup.mode',
    value: 'freeze',
    says: /label moodle-backup\.mode="freeze": expected stop or pause/,
  },
  {
    label: 'moodle-backup.depends-on',
    value: 'db; rm -rf /',
    says: /label moodle-backup\.depends-on="db; rm -rf \/": expected a comma-separated list of service names/,
  },
  {
    label: 'moodle-backup.stpo',
    value: 'true',
    says: /label moodle-backup\.stpo="true": unknown label \(did you mean moodle-backup\.stop\?\)/,
  },
];

describe('hostile and bad input: configuration fuzzing', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let since: number;
  const figures = new Figures('hostile', 'refused');

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack({ seed: false }), tempDirs('fuzz')]);
    await sleep(1100); // Docker events are matched by the second: keep the stack's own start out
    since = Date.now();
  });
  afterAll(async () => {
    figures.save();
    await stack?.remove();
    await dirs?.remove();
  });

  /** Nothing this suite runs may ever stop, pause or restart a container. */
  async function nothingStopped(): Promise<void> {
    expect(lifecycle(await projectEvents(stack.project, since))).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  }

  const cases = [...FIXED, ...fuzzCases(Number(process.env.FAULT_SEED ?? 9), 8)];

  figures.each(
    cases,
    '$name: exit 2 naming the key, nothing stopped',
    async ({ env, yaml, command, says }) => {
      const extra: Record<string, string> = { ...env };
      if (yaml !== undefined) {
        const file = join(dirs.root, 'config.yml');
        await writeFile(file, yaml);
        extra.BACKUP_CONFIG = file;
      }
      const e = cliEnv(stack.project, dirs, extra);
      for (const [k, v] of Object.entries(e)) if (v === '') delete e[k];
      const r = await runCli(command ?? ['backup'], e, { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(2);
      const line = r.stderr.split('\n').find((l) => l.startsWith('error ['));
      expect(line).toMatch(/^error \[CONFIG_INVALID\]: /);
      expect(line).toMatch(says);
      await nothingStopped();
    },
  );

  figures.each(
    BAD_LABELS,
    'label $label=$value: exit 2 naming container and label, nothing stopped',
    async ({ label, value, says }) => {
      // A one-off container of the project carrying the bad label, as a compose service would.
      const name = `${stack.project}-extra-1`;
      const c = await docker().createContainer({
        name,
        Image: (await docker().getContainer(stack.containers.moodle).inspect()).Config.Image,
        Cmd: ['sleep', '600'],
        Entrypoint: [],
        Labels: { ...composeLabels(stack.project, 'extra'), [label]: value },
        HostConfig: { Binds: [`${stack.volumes.moodledata_data}:/data:ro`], NetworkMode: 'none' },
      });
      try {
        await c.start();
        const t0 = Date.now();
        const r = await runCli(['backup'], cliEnv(stack.project, dirs), { timeoutMs: 60_000 });
        expect(r.code, r.stderr).toBe(2);
        const line = r.stderr.split('\n').find((l) => l.startsWith('error ['));
        expect(line).toMatch(/^error \[LABEL_INVALID\]: invalid label: /);
        expect(line).toContain(name);
        expect(line).toMatch(says);
        const events = lifecycle(await projectEvents(stack.project, t0)).filter((e) => !e.endsWith(' extra'));
        expect(events).toEqual([]);
        expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      } finally {
        await c.remove({ force: true, v: true });
      }
    },
  );
});
