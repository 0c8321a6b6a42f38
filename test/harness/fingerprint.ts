import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { inject } from 'vitest';
import { docker, execOk, IMAGES, TEST_LABEL, uniqueName } from './docker.js';

/** One file-system entry as a user would compare it after a restore. */
export interface Entry {
  path: string;
  type: string; // f file, d dir, l symlink, ...
  size: number; // 0 for directories (their size is a file-system detail)
  mode: string; // octal permission bits incl. setuid/setgid/sticky
  uid: number;
  gid: number;
  mtime: number; // whole seconds: tar keeps seconds
  nlink: number; // for files: hard links must survive
  sha256: string; // files only
  link: string; // symlink target
}

export interface VolumeFingerprint {
  entries: Entry[];
  digest: string;
}

/**
 * Lists a volume with GNU find and sha256sum: an oracle independent of the product's own tar path. As root on
 * the engine's host it reads the volume's directory directly (as `ls` on the host would: ~0.1 s); otherwise
 * from a throwaway container (~1.5–3 s of create, start, exec and remove on a loaded machine, paid by every
 * fingerprint of every test). `exclude` drops paths (relative, no leading './') and everything below them.
 */
export async function fingerprintVolume(
  volume: string,
  opts: { exclude?: string[]; client?: Docker } = {},
): Promise<VolumeFingerprint> {
  // Another engine's volume (opts.client) is not this host's directory.
  const dir = opts.client ? null : await hostDir(volume);
  const { listing, sums } = dir ? await listOnHost(dir) : await listInContainer(volume, opts.client);
  return fingerprintOf(listing, sums, opts.exclude ?? []);
}

const run = promisify(execFile);
const FIND_FORMAT = '%P\\t%y\\t%s\\t%#m\\t%U\\t%G\\t%T@\\t%n\\t%l\\n';
const SUMS = 'find . -type f -print0 | xargs -0 -r sha256sum';

/** The volume's directory when this process can read it (root, the engine on this host), else null. */
async function hostDir(volume: string): Promise<string | null> {
  if (process.getuid?.() !== 0) return null;
  const { Mountpoint } = await docker().getVolume(volume).inspect();
  return access(Mountpoint, constants.R_OK).then(
    () => Mountpoint,
    () => null,
  );
}

async function listOnHost(dir: string): Promise<{ listing: string; sums: string }> {
  const opts = { cwd: dir, maxBuffer: 256 * 1024 * 1024, timeout: 120_000 };
  const [listing, sums] = await Promise.all([
    run('find', ['.', '-printf', FIND_FORMAT], opts),
    run('sh', ['-c', SUMS], opts),
  ]);
  return { listing: listing.stdout, sums: sums.stdout };
}

async function listInContainer(volume: string, client?: Docker): Promise<{ listing: string; sums: string }> {
  const d = client ?? docker();
  const name = uniqueName('fp');
  const c = await d.createContainer({
    name,
    Image: IMAGES.base,
    Cmd: ['sleep', '600'],
    Labels: { [TEST_LABEL]: inject('runId') },
    HostConfig: { Binds: [`${volume}:/v:ro`], NetworkMode: 'none' },
  });
  try {
    await c.start();
    const listing = await execOk(name, ['find', '/v', '-printf', FIND_FORMAT], { client });
    const sums = await execOk(name, ['sh', '-c', `cd /v && ${SUMS}`], { client });
    return { listing, sums };
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

function fingerprintOf(listing: string, sums: string, exclude: string[]): VolumeFingerprint {
  const hashes = new Map<string, string>();
  for (const line of sums.split('\n')) {
    if (!line) continue;
    const hash = line.slice(0, 64);
    const path = line.slice(66).replace(/^\.\//, '');
    hashes.set(path, hash);
  }
  const excluded = (p: string) => exclude.some((x) => p === x || p.startsWith(`${x.replace(/\/$/, '')}/`));
  const entries: Entry[] = [];
  for (const line of listing.split('\n')) {
    if (!line) continue;
    const [path = '', type = '', size, mode = '', uid, gid, mtime, nlink, link = ''] = line.split('\t');
    if (excluded(path)) continue;
    entries.push({
      path,
      type,
      size: type === 'd' ? 0 : Number(size),
      mode,
      uid: Number(uid),
      gid: Number(gid),
      mtime: Math.floor(Number(mtime)),
      nlink: type === 'f' ? Number(nlink) : 0,
      sha256: type === 'f' ? (hashes.get(path) ?? 'missing') : '',
      link,
    });
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const digest = createHash('sha256').update(JSON.stringify(entries)).digest('hex');
  return { entries, digest };
}

/** Human-readable differences (first `max`), for assertion messages: [] when equal. */
export function diffFingerprints(a: VolumeFingerprint, b: VolumeFingerprint, max = 20): string[] {
  const out: string[] = [];
  const ma = new Map(a.entries.map((e) => [e.path, e]));
  const mb = new Map(b.entries.map((e) => [e.path, e]));
  for (const [p, ea] of ma) {
    const eb = mb.get(p);
    if (!eb) out.push(`missing: ${p || '.'}`);
    else {
      for (const k of Object.keys(ea) as (keyof Entry)[]) {
        if (ea[k] !== eb[k]) out.push(`${p || '.'}: ${k} ${String(ea[k])} -> ${String(eb[k])}`);
      }
    }
  }
  for (const p of mb.keys()) if (!ma.has(p)) out.push(`extra: ${p || '.'}`);
  return out.slice(0, max);
}

export interface DbFingerprint {
  tables: Record<string, { rows: number; checksum: string }>;
}

/** Row counts and CHECKSUM TABLE of every table of the Moodle database, via the running mariadb container. */
export async function fingerprintDb(
  sql: (q: string) => Promise<string>,
  database: string,
): Promise<DbFingerprint> {
  const names = (
    await sql(
      `SELECT table_name FROM information_schema.tables WHERE table_schema='${database}' ORDER BY table_name`,
    )
  )
    .split('\n')
    .filter(Boolean);
  const tables: DbFingerprint['tables'] = {};
  if (names.length === 0) return { tables };
  const sums = await sql(`CHECKSUM TABLE ${names.map((n) => `\`${n}\``).join(', ')} EXTENDED`);
  for (const line of sums.split('\n').filter(Boolean)) {
    const [full = '', checksum = ''] = line.split('\t');
    const name = full.split('.').pop() ?? full;
    const rows = Number((await sql(`SELECT COUNT(*) FROM \`${name}\``)).trim());
    tables[name] = { rows, checksum };
  }
  return { tables };
}
