import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  copyFile,
  cp,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extract, type Header, pack } from 'tar-stream';
import {
  MANIFEST_NAME,
  type Manifest,
  type ManifestVolume,
  newSnapshotId,
} from '../../src/archive/manifest.js';

/** A copy of a local snapshot directory under a new id, to damage without touching the original. */
export interface SnapshotCopy {
  id: string;
  dir: string;
  manifest: Manifest;
  volume(name: string): ManifestVolume;
  /** Host path of a volume's archive. */
  archive(name: string): string;
  /** Writes `manifest` back as the snapshot's manifest.json. */
  save(): Promise<void>;
}

/**
 * Copies snapshot `srcId` of the local target `fromArchive` into `toArchive` (default the same) under a new id
 * whose time is `at` (default now); the manifest's id and createdAt follow.
 */
export async function copySnapshot(
  fromArchive: string,
  srcId: string,
  opts: { at?: Date; toArchive?: string } = {},
): Promise<SnapshotCopy> {
  const at = opts.at ?? new Date();
  const to = opts.toArchive ?? fromArchive;
  const src = join(fromArchive, srcId);
  let id = newSnapshotId(at);
  for (let i = 0; i < 10 && (await stat(join(to, id)).catch(() => null)); i++) id = newSnapshotId(at);
  const dir = join(to, id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const f of await readdir(src)) await copyFile(join(src, f), join(dir, f));
  // Into another target: the blob store goes along, or the copy's Moodle files would be missing there.
  if (to !== fromArchive && (await stat(join(fromArchive, 'store')).catch(() => null)))
    await cp(join(fromArchive, 'store'), join(to, 'store'), { recursive: true, force: false });
  const manifest = JSON.parse(await readFile(join(src, MANIFEST_NAME), 'utf8')) as Manifest;
  manifest.id = id;
  manifest.createdAt = at.toISOString();
  const copy: SnapshotCopy = {
    id,
    dir,
    manifest,
    volume(name) {
      const v = manifest.volumes.find((x) => x.name === name);
      if (!v) throw new Error(`snapshot ${id} has no volume ${name}`);
      return v;
    },
    archive(name) {
      return join(dir, copy.volume(name).file);
    },
    save: () => writeFile(join(dir, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`),
  };
  await copy.save();
  return copy;
}

/** Inverts one byte of a file (default: the middle one). */
export async function flipByte(path: string, offset?: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const at = offset ?? Math.floor((await fh.stat()).size / 2);
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = (b[0] ?? 0) ^ 0xff;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export function zstd(input: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr?.toString()}`);
  return r.stdout;
}

/** Replaces a volume's archive with `stored` bytes and records their true size and sha256 in the manifest. */
export async function replaceArchive(
  copy: SnapshotCopy,
  volume: string,
  stored: Buffer,
  rawBytes: number,
): Promise<void> {
  await writeFile(copy.archive(volume), stored);
  const v = copy.volume(volume);
  v.storedBytes = stored.length;
  v.sha256 = sha256(stored);
  v.rawBytes = rawBytes;
  await copy.save();
}

export interface TarEntry extends Partial<Header> {
  name: string;
  body?: string;
}

/** A tar-stream pack and what it writes: `add` an entry (its body, if any, whole), then `end` for the bytes. */
function tarWriter() {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  return {
    add: (header: Partial<Header> & { name: string }, body?: Buffer | string) =>
      new Promise<void>((resolve, reject) => {
        const cb = (err?: Error | null) => (err ? reject(err) : resolve());
        if (body !== undefined) p.entry(header, body, cb);
        else p.entry(header, cb);
      }),
    end: async () => {
      p.finalize();
      await ended;
      return Buffer.concat(chunks);
    },
  };
}

/** A tar archive built entry by entry with tar-stream, exactly as given (no name clean-up). */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const w = tarWriter();
  for (const { body, ...header } of entries) {
    if (body !== undefined)
      await w.add({ mtime: new Date(0), ...header, size: Buffer.byteLength(body) }, body);
    else await w.add({ mtime: new Date(0), ...header });
  }
  return w.end();
}

function sh(script: string): void {
  const r = spawnSync('sh', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${script.slice(0, 120)} exited ${r.status}: ${r.stderr?.toString()}`);
}

/**
 * Unpacks a zstd volume archive with GNU tar (as root: owners, modes and times kept), overwrites the middle
 * third of `relPath` with random bytes (keeping its size and mtime), and packs the tree again with tar+zstd,
 * recording the new archive's true size and sha256: an intact archive of a damaged database.
 */
export async function corruptFileInArchive(
  copy: SnapshotCopy,
  volume: string,
  relPath: string,
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'mbst-tamper-'));
  try {
    const tree = join(work, 'tree');
    await mkdir(tree);
    sh(`zstd -dc '${copy.archive(volume)}' | tar -x --numeric-owner -p -C '${tree}' -f -`);
    const file = join(tree, relPath);
    const before = await stat(file);
    const third = Math.floor(before.size / 3);
    if (third < 16384) throw new Error(`${relPath} is too small to damage (${before.size} bytes)`);
    const fh = await open(file, 'r+');
    try {
      await fh.write(randomBytes(third), 0, third, third);
    } finally {
      await fh.close();
    }
    await utimes(file, before.atime, before.mtime);
    const tar = join(work, 'out.tar');
    sh(`tar -c --numeric-owner -C '${tree}' -f '${tar}' . && zstd -q -3 -c '${tar}' > '${tar}.zst'`);
    await replaceArchive(copy, volume, await readFile(`${tar}.zst`), (await stat(tar)).size);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Rewrites a volume's zstd archive with `extra` entries (directories) added, each right after its parent's
 * entry as GNU tar's walk would have written it (at the end when the archive has no such parent), the archive's
 * own entries copied with their headers; records the new archive's true size and sha256. A name the archive
 * already holds is not added again.
 */
export async function addToArchive(
  copy: SnapshotCopy,
  volume: string,
  extra: (Partial<Header> & { name: string })[],
): Promise<void> {
  const r = spawnSync('zstd', ['-q', '-dc', copy.archive(volume)], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd -d failed: ${r.stderr?.toString()}`);
  const bare = (name: string) => name.replace(/\/$/, '');
  const parentOf = (name: string) => bare(name).slice(0, bare(name).lastIndexOf('/'));
  const children = new Map<string, typeof extra>();
  for (const h of extra) children.set(parentOf(h.name), [...(children.get(parentOf(h.name)) ?? []), h]);
  const names = new Set<string>();
  const out = tarWriter();
  const entries: { header: Header; body: Buffer }[] = [];
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    const body: Buffer[] = [];
    stream.on('data', (c) => body.push(c as Buffer));
    stream.on('end', () => {
      entries.push({ header, body: Buffer.concat(body) });
      next();
    });
  });
  const read = new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(r.stdout);
  await read;
  for (const e of entries) names.add(bare(e.header.name));
  const added = new Set<string>();
  for (const e of entries) {
    await out.add(e.header, e.body);
    for (const h of children.get(bare(e.header.name)) ?? [])
      if (!names.has(bare(h.name)) && !added.has(h.name)) {
        added.add(h.name);
        await out.add(h);
      }
  }
  for (const h of extra) if (!names.has(bare(h.name)) && !added.has(h.name)) await out.add(h);
  const tar = await out.end();
  await replaceArchive(copy, volume, zstd(tar), tar.length);
}
