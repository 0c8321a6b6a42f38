import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardStream } from '../../../src/archive/tar-guard-stream.js';

/** Runs bytes through the in-line guard; returns what came out, or the error. */
async function through(tar: Buffer): Promise<{ out: Buffer; err?: { code?: string; message: string } }> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      parts.push(c);
      cb();
    },
  });
  try {
    await pipeline(Readable.from([tar]), guardStream('vol'), sink);
    return { out: Buffer.concat(parts) };
  } catch (err) {
    return { out: Buffer.concat(parts), err: err as { code?: string; message: string } };
  }
}

type Headers = Parameters<ReturnType<typeof pack>['entry']>[0];

async function archive(entries: [Headers, string?][]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => p.on('end', () => r()));
  for (const [h, body] of entries) p.entry(h, body ?? '');
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

describe('in-line tar guard (restore mount path)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbst-guard-'));
    await mkdir(join(dir, 'src/sub'), { recursive: true });
    await writeFile(join(dir, 'src/.hidden'), 'x');
    await writeFile(join(dir, `src/sub/${'long-name-'.repeat(15)}`), 'y'.repeat(3000));
    await symlink('../.hidden', join(dir, 'src/sub/up'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('passes a GNU tar archive (long names, symlinks, dotfiles) through byte for byte', async () => {
    for (const format of ['gnu', 'pax']) {
      const tar = execFileSync('tar', ['-C', join(dir, 'src'), '-c', `--format=${format}`, '-f', '-', '.']);
      const r = await through(tar);
      expect(r.err, format).toBeUndefined();
      expect(r.out.equals(tar), format).toBe(true);
    }
  });

  it('stops before any byte of a hostile entry is passed on', async () => {
    const good: [Headers, string?] = [{ name: 'ok.txt', size: 2 }, 'ok'];
    const cases: [Headers, string][] = [
      [{ name: '../escape', size: 1 }, '".."'],
      [{ name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 }, 'character-device'],
      [{ name: 'suid', size: 1, mode: 0o4755 }, 'setuid'],
      [{ name: 'plain', size: 1, pax: { 'GNU.sparse.name': '../../etc/passwd' } }, 'GNU.sparse.name'],
    ];
    for (const [h, why] of cases) {
      const tar = await archive([good, [h, h.size ? 'x' : undefined]]);
      const r = await through(tar);
      expect(r.err?.code, h.name).toBe('HOSTILE_ARCHIVE');
      expect(r.err?.message, h.name).toContain(why);
      // Only the harmless first entry (header + one body block) got through.
      expect(r.out.length, h.name).toBeLessThanOrEqual(1024);
    }
  });

  it('passes a symlink leaving the volume and a named pipe, and stops at an entry written through the link', async () => {
    const link: [Headers, string?] = [
      { name: 'config.php', type: 'symlink', linkname: '../../shared/config.php' },
    ];
    const fifo: [Headers, string?] = [{ name: 'sessions.fifo', type: 'fifo' }];
    const fine = await archive([link, fifo, [{ name: 'ok.txt', size: 2 }, 'ok']]);
    const r = await through(fine);
    expect(r.err).toBeUndefined();
    expect(r.out.equals(fine)).toBe(true);
    const bad = await through(await archive([link, [{ name: 'config.php/x', size: 1 }, 'x']]));
    expect(bad.err?.code).toBe('HOSTILE_ARCHIVE');
    expect(bad.err?.message).toContain('through the symlink config.php');
  });
});
