import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isSidecarError, SidecarError } from '../../src/common/errors.js';
import { type Backend, copyObject } from '../../src/storage/backend.js';
import { LocalBackend } from '../../src/storage/local.js';
import { S3Backend } from '../../src/storage/s3.js';
import { createTestBucket, testS3Client, testS3Target } from '../harness/s3.js';

const MiB = 1024 * 1024;

interface Fixture {
  backend: Backend;
  /** Keys of multipart uploads still pending under the backend's root; null when the server cannot tell. */
  pendingUploads?: () => Promise<string[] | null>;
  cleanup(): Promise<void>;
}

/** Streams `data` in small chunks, as an archive pipeline would. */
function streamOf(data: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += chunk) yield data.subarray(i, i + chunk);
    })(),
  );
}

/** A source that delivers `before` random bytes and then fails, like a tar stream whose container died. */
function failingSource(before: number, chunk = 64 * 1024): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= before) {
        this.destroy(new Error('simulated source failure'));
        return;
      }
      const n = Math.min(chunk, before - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function expectCode(
  p: Promise<unknown>,
  code: 'STORAGE_NOT_FOUND' | 'STORAGE_FAILED',
): Promise<SidecarError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SidecarError);
  expect((err as SidecarError).code).toBe(code);
  return err as SidecarError;
}

/** The behaviour every backend must show (after restic's backend tests). */
function conformance(name: string, makeBackend: () => Promise<Fixture>) {
  describe(`storage conformance: ${name}`, () => {
    let fx: Fixture;
    let b: Backend;
    beforeEach(async () => {
      fx = await makeBackend();
      b = fx.backend;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    it('round-trips a small object and reports its size', async () => {
      const data = Buffer.from('hello, moodle\n');
      expect(await b.put('small.txt', streamOf(data))).toEqual({ size: data.length });
      expect(await readAll(await b.get('small.txt'))).toEqual(data);
    });

    it('round-trips an empty object', async () => {
      expect(await b.put('empty', Readable.from([]))).toEqual({ size: 0 });
      expect((await readAll(await b.get('empty'))).length).toBe(0);
      expect((await b.stat('empty'))?.size).toBe(0);
    });

    it('round-trips a ~12 MB random stream byte for byte (multipart on S3)', async () => {
      const data = randomBytes(12 * MiB + 12_345);
      expect(await b.put('snap/big.tar.zst', streamOf(data))).toEqual({ size: data.length });
      expect((await b.stat('snap/big.tar.zst'))?.size).toBe(data.length);
      expect(sha256(await readAll(await b.get('snap/big.tar.zst')))).toBe(sha256(data));
    });

    it('accepts a correct contentLength and rejects a wrong one without storing anything', async () => {
      const data = randomBytes(1000);
      expect(await b.put('exact', streamOf(data), { contentLength: 1000 })).toEqual({ size: 1000 });
      await expectCode(b.put('short', streamOf(data), { contentLength: 1001 }), 'STORAGE_FAILED');
      expect(await b.stat('short')).toBeNull();
      expect((await b.list('')).map((o) => o.key)).toEqual(['exact']);
    });

    it('stat reports size and time of an object, null for a missing one', async () => {
      const before = Date.now();
      await b.put('dir/obj', streamOf(randomBytes(4321)));
      const info = await b.stat('dir/obj');
      expect(info?.key).toBe('dir/obj');
      expect(info?.size).toBe(4321);
      expect(info?.modified).toBeInstanceOf(Date);
      // S3 keeps whole seconds; allow for that and for a little clock skew.
      expect(Math.abs((info?.modified.getTime() ?? 0) - before)).toBeLessThan(60_000);
      expect(await b.stat('dir/missing')).toBeNull();
      expect(await b.stat('dir')).toBeNull(); // a "directory" is not an object
    });

    it('lists recursively by string prefix, sorted, with sizes', async () => {
      const keys = ['snap/b/2.bin', 'other/c', 'snap/a.bin', 'snapshot-x', 'snap/b/1.bin', 'snap/b/10.bin'];
      for (const [i, k] of keys.entries()) await b.put(k, streamOf(Buffer.alloc(i + 1, 7)));
      expect((await b.list('snap/')).map((o) => o.key)).toEqual([
        'snap/a.bin',
        'snap/b/1.bin',
        'snap/b/10.bin',
        'snap/b/2.bin',
      ]);
      expect((await b.list('snap')).map((o) => o.key)).toEqual([
        'snap/a.bin',
        'snap/b/1.bin',
        'snap/b/10.bin',
        'snap/b/2.bin',
        'snapshot-x',
      ]);
      expect((await b.list('snap/b/1')).map((o) => o.key)).toEqual(['snap/b/1.bin', 'snap/b/10.bin']);
      const all = await b.list('');
      expect(all.map((o) => o.key)).toEqual([...keys].sort());
      expect(all.find((o) => o.key === 'snap/b/10.bin')?.size).toBe(6);
      expect(all.every((o) => o.modified instanceof Date)).toBe(true);
      expect(await b.list('nothing/')).toEqual([]);
      expect(await b.list('snap/b/3')).toEqual([]);
    });

    it('lists nothing in an empty store', async () => {
      expect(await b.list('')).toEqual([]);
    });

    it('overwrites an existing object', async () => {
      await b.put('k', streamOf(Buffer.from('first, and longer')));
      expect(await b.put('k', streamOf(Buffer.from('second')))).toEqual({ size: 6 });
      expect((await readAll(await b.get('k'))).toString()).toBe('second');
      expect((await b.stat('k'))?.size).toBe(6);
      expect((await b.list('')).map((o) => o.key)).toEqual(['k']);
    });

    it('deletes an existing object and ignores a missing one', async () => {
      await b.put('a/b/c', streamOf(Buffer.from('x')));
      await b.put('a/keep', streamOf(Buffer.from('y')));
      await b.delete('a/b/c');
      expect(await b.stat('a/b/c')).toBeNull();
      await expectCode(b.get('a/b/c'), 'STORAGE_NOT_FOUND');
      expect((await b.list('')).map((o) => o.key)).toEqual(['a/keep']);
      await expect(b.delete('a/b/c')).resolves.toBeUndefined();
      await expect(b.delete('never/was')).resolves.toBeUndefined();
      expect((await readAll(await b.get('a/keep'))).toString()).toBe('y');
    });

    it('get of a missing object rejects with STORAGE_NOT_FOUND', async () => {
      const err = await expectCode(b.get('no/such/object'), 'STORAGE_NOT_FOUND');
      expect(err.message).toContain('no/such/object');
    });

    it('a put whose source fails midway rejects and leaves no object visible', async () => {
      // 6 MB: past the first 5 MB part, so S3 has started a multipart upload when the source breaks.
      const err = await expectCode(b.put('broken/big', failingSource(6 * MiB)), 'STORAGE_FAILED');
      expect(err.message).toContain('simulated source failure');
      await expectCode(b.put('broken/small', failingSource(1000)), 'STORAGE_FAILED');
      expect(await b.stat('broken/big')).toBeNull();
      expect(await b.stat('broken/small')).toBeNull();
      expect(await b.list('')).toEqual([]);
      await expectCode(b.get('broken/big'), 'STORAGE_NOT_FOUND');
    });

    it('a failed overwrite leaves the previous object intact', async () => {
      const old = randomBytes(2 * MiB);
      await b.put('snap/manifest', streamOf(old));
      await expectCode(b.put('snap/manifest', failingSource(6 * MiB)), 'STORAGE_FAILED');
      expect(sha256(await readAll(await b.get('snap/manifest')))).toBe(sha256(old));
      expect((await b.list('')).map((o) => [o.key, o.size])).toEqual([['snap/manifest', old.length]]);
    });

    it('copies an object (server-side where it can) that outlives its source; a missing source is STORAGE_NOT_FOUND', async () => {
      const data = randomBytes(6 * MiB + 7);
      const odd = 'sym+bols/ñandú a%20b.tar';
      await b.put('s1/code.tar.zst', streamOf(data));
      expect(
        await copyObject(b, 's1/code.tar.zst', 's2/code.tar.zst', { contentLength: data.length }),
      ).toEqual({
        size: data.length,
      });
      await copyObject(b, 's2/code.tar.zst', odd, { contentLength: data.length });
      // A backend without copy (a wrapper that lacks it): the bytes go through get and put.
      const { copy: _copy, ...plain } = b;
      const noCopy: Backend = {
        ...plain,
        location: b.location,
        put: (k, body, o) => b.put(k, body, o),
        get: (k) => b.get(k),
      };
      await copyObject(noCopy, 's2/code.tar.zst', 's4/code.tar.zst', { contentLength: data.length });
      await b.delete('s1/code.tar.zst');
      for (const k of ['s2/code.tar.zst', odd, 's4/code.tar.zst']) {
        expect((await b.stat(k))?.size).toBe(data.length);
        expect(sha256(await readAll(await b.get(k)))).toBe(sha256(data));
      }
      await expectCode(
        copyObject(b, 's1/code.tar.zst', 's3/x', { contentLength: data.length }),
        'STORAGE_NOT_FOUND',
      );
      expect((await b.list('')).map((o) => o.key)).toEqual(
        [odd, 's2/code.tar.zst', 's4/code.tar.zst'].sort(),
      );
    });

    it('stores keys with spaces and non-ASCII characters', async () => {
      const keys = [
        'dir with space/file name.bin',
        'Ünïcödé/ñandú 日本語 😀.tar',
        'sym+bols/a%20b&c=d,e;f@g.bin',
      ];
      for (const k of keys) await b.put(k, streamOf(Buffer.from(k)));
      expect((await b.list('')).map((o) => o.key)).toEqual([...keys].sort());
      for (const k of keys) {
        expect((await b.stat(k))?.size).toBe(Buffer.byteLength(k));
        expect((await readAll(await b.get(k))).toString()).toBe(k);
      }
      expect((await b.list('Ünïcödé/')).map((o) => o.key)).toEqual([keys[1]]);
      for (const k of keys) await b.delete(k);
      expect(await b.list('')).toEqual([]);
    });
  });
}

/** Every path below `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  return ((await readdir(dir, { recursive: true })) as string[]).sort();
}

// ---------------------------------------------------------------------------------------------------------------
// Local directory

const localDirs: string[] = [];
afterEach(async () => {
  for (const d of localDirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function localDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'mbs-local-'));
  localDirs.push(d);
  return d;
}

conformance('LocalBackend', async () => {
  const dir = await localDir();
  return {
    backend: new LocalBackend({ type: 'local', path: join(dir, 'archive') }),
    cleanup: async () => {},
  };
});

describe('LocalBackend only', () => {
  it('creates files 0600 and directories 0700 whatever the umask', async () => {
    const dir = await localDir();
    const root = join(dir, 'archive');
    const b = new LocalBackend({ type: 'local', path: root });
    // 0o277 would leave files read-only and directories unwritable if modes came from open/mkdir alone.
    for (const mask of [0o022, 0o277, 0o000]) {
      const old = process.umask(mask);
      try {
        await b.put(`m${mask}/nested/deeper/file`, streamOf(Buffer.from('x')));
      } finally {
        process.umask(old);
      }
      const mode = async (p: string) => (await stat(join(root, p))).mode & 0o777;
      expect(await mode(`m${mask}/nested/deeper/file`)).toBe(0o600);
      expect(await mode(`m${mask}/nested/deeper`)).toBe(0o700);
      expect(await mode(`m${mask}/nested`)).toBe(0o700);
      expect(await mode(`m${mask}`)).toBe(0o700);
    }
    expect((await stat(root)).mode & 0o777).toBe(0o700);
  });

  it('an overwrite keeps mode 0600', async () => {
    const root = await localDir();
    const b = new LocalBackend(root);
    await b.put('f', streamOf(Buffer.from('1')));
    await b.put('f', streamOf(Buffer.from('2')));
    expect((await stat(join(root, 'f'))).mode & 0o777).toBe(0o600);
  });

  it('leaves no .tmp- file and no new empty directory after a failed put', async () => {
    const root = await localDir();
    const b = new LocalBackend(root);
    await b.put('keep/me', streamOf(Buffer.from('kept')));
    await expectCode(b.put('keep/new/deep/x', failingSource(3 * MiB)), 'STORAGE_FAILED');
    await expectCode(b.put('top', failingSource(10)), 'STORAGE_FAILED');
    expect(await tree(root)).toEqual(['keep', 'keep/me']);
  });

  it('never lists in-flight .tmp- files and removes emptied parents up to the root', async () => {
    const root = await localDir();
    const b = new LocalBackend(root);
    await b.put('s/1/a', streamOf(Buffer.from('a')));
    await writeFile(join(root, '.tmp-crashed'), 'partial');
    await writeFile(join(root, 's', '1', '.tmp-0123'), 'partial');
    expect((await b.list('')).map((o) => o.key)).toEqual(['s/1/a']);
    await b.delete('s/1/a');
    // s/1 still holds a leftover temp file, so it must stay; nothing above an emptied dir is touched.
    expect(await tree(root)).toEqual(['.tmp-crashed', 's', 's/1', 's/1/.tmp-0123']);
    await b.put('t/u/v', streamOf(Buffer.from('v')));
    await b.delete('t/u/v');
    expect(await tree(root)).toEqual(['.tmp-crashed', 's', 's/1', 's/1/.tmp-0123']);
    expect((await stat(root)).isDirectory()).toBe(true);
  });

  it('createFile: a file another process writes, invisible until commit, published 0600 and whole; discard leaves nothing', async () => {
    const root = await localDir();
    const b = new LocalBackend(root);
    const data = randomBytes(3 * MiB + 7);
    const f = await b.createFile('snap/one/archive.tar.zst');
    // Written by a child process through the descriptor, as zstd writes it.
    execFileSync('cat', { input: data, stdio: ['pipe', f.fd, 'pipe'] });
    await f.flushSoFar();
    expect(await b.list('')).toEqual([]);
    expect(await b.stat('snap/one/archive.tar.zst')).toBeNull();
    expect(await f.commit()).toEqual({ size: data.length });
    expect((await readAll(await b.get('snap/one/archive.tar.zst'))).equals(data)).toBe(true);
    expect((await stat(join(root, 'snap/one/archive.tar.zst'))).mode & 0o777).toBe(0o600);
    expect(b.localPath('snap/one/archive.tar.zst')).toBe(join(root, 'snap/one/archive.tar.zst'));

    const g = await b.createFile('snap/two/archive.tar.zst');
    execFileSync('cat', { input: data.subarray(0, 1000), stdio: ['pipe', g.fd, 'pipe'] });
    await g.discard();
    expect(await tree(root)).toEqual(['snap', 'snap/one', 'snap/one/archive.tar.zst']);
    expect(g.writeFailed('No space left on device')).toMatchObject({ code: 'STORAGE_FAILED' });
    expect(g.writeFailed('No space left on device').message).toContain(root);
    await expectCode(b.createFile('../outside'), 'STORAGE_FAILED');
  });

  it('rejects hostile keys on every operation and writes nothing outside the root', async () => {
    const outer = await localDir();
    const root = join(outer, 'archive');
    const b = new LocalBackend(root);
    await b.put('inside', streamOf(Buffer.from('i')));
    const hostile = [
      '',
      '/etc/passwd',
      '../escape',
      'a/../../escape',
      'a/..',
      'a//b',
      'a/',
      './a',
      'a/./b',
      '.tmp-hidden',
      'x/.tmp-hidden',
      'nul\0byte',
    ];
    for (const key of hostile) {
      const err = await expectCode(b.put(key, streamOf(Buffer.from('evil'))), 'STORAGE_FAILED');
      expect(err.message).toContain(JSON.stringify(key));
      await expectCode(b.get(key), 'STORAGE_FAILED');
      await expectCode(b.stat(key), 'STORAGE_FAILED');
      await expectCode(b.delete(key), 'STORAGE_FAILED');
    }
    await expectCode(b.list('../'), 'STORAGE_FAILED');
    expect(await tree(outer)).toEqual(['archive', 'archive/inside']);
  });

  it('does not put through a symlinked directory inside the archive', async () => {
    const outer = await localDir();
    const root = join(outer, 'archive');
    await mkdir(join(outer, 'elsewhere'), { recursive: true });
    await mkdir(root, { recursive: true });
    await symlink(join(outer, 'elsewhere'), join(root, 'link'));
    const b = new LocalBackend(root);
    await expectCode(b.put('link/x', streamOf(Buffer.from('x'))), 'STORAGE_FAILED');
    expect(await readdir(join(outer, 'elsewhere'))).toEqual([]);
    expect(await b.list('')).toEqual([]); // the link is not followed either
  });

  it('reports where it stores', async () => {
    const root = await localDir();
    expect(new LocalBackend({ type: 'local', path: `${root}/x/..` }).location).toBe(`local:${root}`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// S3 (s3rver on 127.0.0.1, one bucket for this file, one prefix per test)

let bucket: string;
beforeAll(async () => {
  bucket = await createTestBucket('conf');
});
let prefixSeq = 0;

/** Every command an S3Backend's client sends, with what it answered. */
function recordCommands(backend: S3Backend) {
  const log: { command: string; input: Record<string, unknown>; output?: Record<string, unknown> }[] = [];
  backend.client.middlewareStack.add(
    (next, context) => async (args) => {
      const entry = { command: String(context.commandName), input: args.input as Record<string, unknown> };
      log.push(entry);
      const res = await next(args);
      Object.assign(entry, { output: res.output as unknown as Record<string, unknown> });
      return res;
    },
    { step: 'initialize', name: 'recordCommandsForTest' },
  );
  return log;
}

conformance('S3Backend (s3rver)', async () => {
  const target = testS3Target(bucket, `moodle/t${++prefixSeq}`);
  const backend = new S3Backend(target);
  return {
    backend,
    pendingUploads: async () => {
      const client = testS3Client();
      try {
        const res = await client.send(
          new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${target.prefix}/` }),
        );
        return (res.Uploads ?? []).map((u) => u.Key ?? '');
      } catch (err) {
        if ((err as { name?: string }).name === 'NotImplemented') return null;
        throw err;
      } finally {
        client.destroy();
      }
    },
    cleanup: () => backend.close(),
  };
});

describe('S3Backend only', () => {
  it('stores under prefix/ and keeps prefixes that share a start apart', async () => {
    const ab = new S3Backend(testS3Target(bucket, 'iso/ab'));
    const a = new S3Backend(testS3Target(bucket, 'iso/a'));
    try {
      await ab.put('x', streamOf(Buffer.from('x')));
      expect(ab.location).toBe(`s3://${bucket}/iso/ab`);
      expect(await a.list('')).toEqual([]);
      expect(await a.stat('b/x')).toBeNull();
      const client = testS3Client();
      const raw = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'iso/' }));
      client.destroy();
      expect(raw.Contents?.map((o) => o.Key)).toEqual(['iso/ab/x']);
    } finally {
      await ab.close();
      await a.close();
    }
  });

  it('works at the bucket root (empty prefix)', async () => {
    const rootBucket = await createTestBucket('root');
    const b = new S3Backend(testS3Target(rootBucket, ''));
    try {
      expect(b.location).toBe(`s3://${rootBucket}`);
      await b.put('top/obj', streamOf(Buffer.from('top')));
      expect((await b.list('')).map((o) => o.key)).toEqual(['top/obj']);
      expect((await readAll(await b.get('top/obj'))).toString()).toBe('top');
    } finally {
      await b.close();
    }
  });

  it('pages through more than one ListObjectsV2 page', async () => {
    const b = new S3Backend(testS3Target(bucket, 'paging'));
    const log = recordCommands(b);
    try {
      const keys = Array.from({ length: 1005 }, (_, i) => `k/${String(i).padStart(4, '0')}`);
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((k) => b.put(k, streamOf(Buffer.from(k)))));
      }
      expect((await b.list('k/')).map((o) => o.key)).toEqual(keys);
      expect(log.filter((c) => c.command === 'ListObjectsV2Command').length).toBe(2);
    } finally {
      await b.close();
    }
  });

  it('a 12 MB put goes up in 5 MB parts; a failed one sends AbortMultipartUpload and never completes', async () => {
    const b = new S3Backend(testS3Target(bucket, 'mpu'));
    const log = recordCommands(b);
    try {
      await b.put('big', streamOf(randomBytes(12 * MiB)));
      expect(log.filter((c) => c.command === 'UploadPartCommand').length).toBe(3);
      expect(log.filter((c) => c.command === 'CompleteMultipartUploadCommand').length).toBe(1);
      log.length = 0;

      await expectCode(b.put('broken', failingSource(6 * MiB)), 'STORAGE_FAILED');
      const created = log.find((c) => c.command === 'CreateMultipartUploadCommand');
      const uploadId = created?.output?.UploadId;
      expect(typeof uploadId).toBe('string');
      const aborts = log.filter((c) => c.command === 'AbortMultipartUploadCommand');
      expect(aborts.length).toBeGreaterThanOrEqual(1);
      expect(aborts.every((c) => c.input.UploadId === uploadId && c.input.Key === 'mpu/broken')).toBe(true);
      expect(log.some((c) => c.command === 'CompleteMultipartUploadCommand')).toBe(false);
    } finally {
      await b.close();
    }
  });

  it('putFile reads a spooled file in parts, reports each multipart upload to the ledger before its first part', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mbst-putfile-'));
    const b = new S3Backend(testS3Target(bucket, 'putfile'));
    const log = recordCommands(b);
    const ledger = {
      uploadStarted: async (u: { uploadId: string; key: string }) => {
        log.push({ command: 'ledger:started', input: { ...u } });
      },
      uploadEnded: async (uploadId: string) => {
        log.push({ command: 'ledger:ended', input: { uploadId } });
      },
    };
    try {
      const data = randomBytes(12 * MiB + 12_345);
      await writeFile(join(dir, 'big'), data);
      expect(
        await b.putFile('snap/big', join(dir, 'big'), { contentLength: data.length, uploads: ledger }),
      ).toEqual({
        size: data.length,
      });
      expect(sha256(await readAll(await b.get('snap/big')))).toBe(sha256(data));
      const names = log.map((c) => c.command);
      expect(names.filter((n) => n === 'UploadPartCommand').length).toBe(3);
      const uploadId = log.find((c) => c.command === 'CreateMultipartUploadCommand')?.output?.UploadId;
      expect(log.find((c) => c.command === 'ledger:started')?.input).toMatchObject({
        uploadId,
        key: 'putfile/snap/big',
      });
      expect(names.indexOf('ledger:started')).toBeLessThan(names.indexOf('UploadPartCommand'));
      expect(names.indexOf('ledger:ended')).toBeGreaterThan(names.indexOf('CompleteMultipartUploadCommand'));
      log.length = 0;

      // Up to one part: a single PutObject, no multipart upload to record.
      const small = randomBytes(3 * MiB);
      await writeFile(join(dir, 'small'), small);
      await b.putFile('snap/small', join(dir, 'small'), { contentLength: small.length, uploads: ledger });
      expect(log.map((c) => c.command)).toEqual(['PutObjectCommand']);
      expect(sha256(await readAll(await b.get('snap/small')))).toBe(sha256(small));

      // A file of another length than announced stores nothing.
      await expectCode(
        b.putFile('snap/wrong', join(dir, 'small'), { contentLength: small.length + 1 }),
        'STORAGE_FAILED',
      );
      expect(await b.stat('snap/wrong')).toBeNull();
    } finally {
      await b.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('putFile requests look like Buffer uploads: Content-Length, signed SHA-256 and CRC32 of exactly each part', async () => {
    // s3rver checks neither, so the test does: a wrong hash would be refused by S3 itself.
    const dir = await mkdtemp(join(tmpdir(), 'mbst-putfile-'));
    const b = new S3Backend({
      ...testS3Target(bucket, 'wire'),
      requestChecksumCalculation: 'when_supported',
    });
    const seen: Record<string, string | undefined>[] = [];
    b.client.middlewareStack.add(
      (next, context) => async (args) => {
        const h = (args.request as { headers: Record<string, string> }).headers;
        if (context.commandName === 'UploadPartCommand')
          seen.push({
            sha256: h['x-amz-content-sha256'],
            crc32: h['x-amz-checksum-crc32'],
            length: h['content-length'],
            encoding: h['content-encoding'],
            signed: /SignedHeaders=[^,]*x-amz-content-sha256/.test(h.authorization ?? '') ? 'yes' : 'no',
          });
        return next(args);
      },
      { step: 'deserialize', name: 'peekSignedRequest' },
    );
    try {
      const data = randomBytes(12 * MiB + 7);
      await writeFile(join(dir, 'f'), data);
      await b.putFile('f', join(dir, 'f'), { contentLength: data.length });
      const parts = [0, 1, 2].map((i) =>
        data.subarray(i * 5 * MiB, Math.min(data.length, (i + 1) * 5 * MiB)),
      );
      const crc = (p: Buffer) => {
        const be = Buffer.alloc(4);
        be.writeUInt32BE(crc32(p) >>> 0);
        return be.toString('base64');
      };
      expect(seen.map((s) => s.sha256).sort()).toEqual(parts.map((p) => sha256(p)).sort());
      for (const p of parts) {
        const req = seen.find((s) => s.sha256 === sha256(p));
        expect(req).toEqual({
          sha256: sha256(p),
          crc32: crc(p),
          length: String(p.length),
          encoding: undefined,
          signed: 'yes',
        });
      }
      expect(sha256(await readAll(await b.get('f')))).toBe(sha256(data));
    } finally {
      await b.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names bucket, key and the server error code, never the secret', async () => {
    const missing = new S3Backend(testS3Target('mbst-no-such-bucket', 'p'));
    const secret = 'very-secret-value-0123456789';
    const wrong = new S3Backend({
      ...testS3Target(bucket, 'p'),
      accessKeyId: 'AKIAWRONGKEY',
      secretAccessKey: secret,
    });
    try {
      const e1 = await expectCode(missing.get('some/key'), 'STORAGE_FAILED');
      expect(e1.message).toContain('s3://mbst-no-such-bucket/p/some/key');
      expect(e1.message).toContain('NoSuchBucket');
      expect(e1.hint).toContain('bucket name');
      const e2 = await expectCode(missing.list(''), 'STORAGE_FAILED');
      expect(e2.message).toContain('NoSuchBucket');
      // A server error while the source still has data must be reported as such, not as the source's close.
      const endless = Readable.from(
        (function* () {
          for (let i = 0; i < 1600; i++) yield Buffer.alloc(64 * 1024); // 100 MiB, made lazily
        })(),
      );
      const e4 = await expectCode(missing.put('big', endless), 'STORAGE_FAILED');
      expect(e4.message).toContain('s3://mbst-no-such-bucket/p/big');
      expect(e4.message).toContain('NoSuchBucket');
      const e3 = await expectCode(wrong.put('k', streamOf(Buffer.from('x'))), 'STORAGE_FAILED');
      expect(e3.message).toContain(`s3://${bucket}/p/k`);
      expect(e3.message).toContain('InvalidAccessKeyId');
      for (const e of [e1, e2, e3, e4]) expect(`${e.message} ${e.hint ?? ''}`).not.toContain(secret);
      expect(isSidecarError(e3, 'STORAGE_FAILED')).toBe(true);
    } finally {
      await missing.close();
      await wrong.close();
    }
  });
});
