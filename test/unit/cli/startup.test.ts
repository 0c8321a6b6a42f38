import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectRun } from '../../harness/cli.js';

/**
 * Start-up cost (issue 19): `--help` loads commander and a few small modules, not the settings, Docker or
 * logger; loading unencrypted settings does not import age-encryption. Each case runs the built entry
 * points (dist/, built by the global setup) in a fresh process whose ES module loads are recorded by a
 * loader hook, so a static import that creeps back in fails here.
 */
const DIST = fileURLToPath(new URL('../../../dist/', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mbs-startup-'));
  await writeFile(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
export async function load(url, ctx, next) {
  const r = await next(url, ctx);
  appendFileSync(${JSON.stringify(join(dir, 'loaded.txt'))}, url + '\\n');
  return r;
}
`,
  );
  await writeFile(
    join(dir, 'register.mjs'),
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`,
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs node with the recording hook; returns its exit code, output and the ES modules it loaded. */
async function traced(args: string[], env: NodeJS.ProcessEnv = {}) {
  await rm(join(dir, 'loaded.txt'), { force: true });
  const child = spawn(process.execPath, ['--import', join(dir, 'register.mjs'), ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { code, stdout, stderr } = await collectRun(child);
  const r = { code, out: stdout + stderr };
  const loaded = (await readFile(join(dir, 'loaded.txt'), 'utf8')).split('\n').filter(Boolean);
  return { ...r, loaded };
}

const packages = (urls: string[]) =>
  [...new Set(urls.flatMap((u) => /node_modules\/((@[^/]+\/)?[^/]+)\//.exec(u)?.[1] ?? []))].sort();

describe('start-up', () => {
  it('backup --help loads commander and no settings, Docker, logger or zod', async () => {
    const r = await traced([join(DIST, 'cli', 'main.js'), 'backup', '--help']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('back up the stack now');
    expect(packages(r.loaded)).toEqual(['commander']);
    const own = r.loaded.filter((u) => u.includes('/dist/')).map((u) => u.replace(/.*\/dist\//, ''));
    expect(own.filter((f) => /^(config|docker|stack|backup|restore|storage|archive)\//.test(f))).toEqual([]);
  });

  const script = `const { loadSettings } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'config', 'load.js')).href)});
const s = await loadSettings(process.env, { defaultFile: '/nonexistent/config.yml' });
console.log(JSON.stringify(s.config.encryption ?? null));`;

  it('unencrypted settings load without age-encryption', async () => {
    const r = await traced(['--input-type=module', '-e', script], { BACKUP_PROJECT: 'p' });
    expect(r.code, r.out).toBe(0);
    expect(r.out.trim()).toBe('null');
    expect(packages(r.loaded)).not.toContain('age-encryption');
    expect(packages(r.loaded)).toContain('zod');
  });

  it('a recipient in the settings loads age-encryption and is still checked', async () => {
    const recipient = await identityToRecipient(await generateIdentity());
    const ok = await traced(['--input-type=module', '-e', script], {
      BACKUP_PROJECT: 'p',
      BACKUP_AGE_RECIPIENTS: recipient,
    });
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain(recipient);
    expect(packages(ok.loaded)).toContain('age-encryption');
    // One character changed: the bech32 checksum fails, which only the library can tell.
    const bad = `${recipient.slice(0, -1)}${recipient.endsWith('q') ? 'p' : 'q'}`;
    const refused = await traced(['--input-type=module', '-e', script], {
      BACKUP_PROJECT: 'p',
      BACKUP_AGE_RECIPIENTS: bad,
    });
    expect(refused.code).not.toBe(0);
    expect(refused.out).toContain('not a valid age recipient');
  });
});
