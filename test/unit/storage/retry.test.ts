import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SidecarError } from '../../../src/common/errors.js';
import type { Backend, ObjectInfo } from '../../../src/storage/backend.js';
import { isTransient, type RetryOptions, withRetry } from '../../../src/storage/retry.js';

type Op = 'put' | 'get' | 'stat' | 'list' | 'delete';

/** A network failure as the backends report it: STORAGE_FAILED wrapping the socket error. */
const transient = () =>
  new SidecarError('STORAGE_FAILED', 'S3 stat failed: ECONNRESET', undefined, {
    cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
  });
const permanent = () =>
  new SidecarError('STORAGE_FAILED', 'S3 stat failed: AccessDenied (HTTP 403)', undefined, {
    cause: Object.assign(new Error('Access Denied'), {
      name: 'AccessDenied',
      $metadata: { httpStatusCode: 403 },
    }),
  });

/** In-memory backend whose next `failures[op]` calls of an operation throw `error()`. */
class FlakyBackend implements Backend {
  readonly location = 'mem:';
  readonly objects = new Map<string, Buffer>();
  readonly calls: Record<Op, number> = { put: 0, get: 0, stat: 0, list: 0, delete: 0 };
  failures: Partial<Record<Op, number>> = {};
  error: () => Error = transient;
  closed = false;

  private maybeFail(op: Op) {
    this.calls[op]++;
    const left = this.failures[op] ?? 0;
    if (left > 0) {
      this.failures[op] = left - 1;
      throw this.error();
    }
  }

  async put(key: string, body: Readable): Promise<{ size: number }> {
    this.maybeFail('put');
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
    const data = Buffer.concat(chunks);
    this.objects.set(key, data);
    return { size: data.length };
  }
  async get(key: string): Promise<Readable> {
    this.maybeFail('get');
    const data = this.objects.get(key);
    if (!data) throw new SidecarError('STORAGE_NOT_FOUND', `no object ${key}`);
    return Readable.from([data]);
  }
  async stat(key: string): Promise<ObjectInfo | null> {
    this.maybeFail('stat');
    const data = this.objects.get(key);
    return data ? { key, size: data.length, modified: new Date(0) } : null;
  }
  async list(prefix: string): Promise<ObjectInfo[]> {
    this.maybeFail('list');
    return [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix))
      .sort()
      .map((key) => ({ key, size: this.objects.get(key)?.length ?? 0, modified: new Date(0) }));
  }
  async delete(key: string): Promise<void> {
    this.maybeFail('delete');
    this.objects.delete(key);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function setup(opts: Partial<RetryOptions> = {}) {
  const inner = new FlakyBackend();
  const delays: number[] = [];
  const warnings: Record<string, unknown>[] = [];
  const backend = withRetry(inner, {
    attempts: 4,
    baseDelayMs: 100,
    maxDelayMs: 1000,
    sleep: async (ms) => {
      delays.push(ms);
    },
    log: (_msg, fields) => {
      warnings.push(fields);
    },
    ...opts,
  });
  return { inner, backend, delays, warnings };
}

async function text(stream: Readable): Promise<string> {
  let s = '';
  for await (const c of stream) s += Buffer.from(c as Uint8Array).toString();
  return s;
}

describe('withRetry', () => {
  it('retries stat, list, delete and get until they succeed', async () => {
    const { inner, backend } = setup();
    inner.objects.set('a', Buffer.from('A'));
    inner.failures = { stat: 3, list: 2, get: 1, delete: 3 };
    expect(await backend.stat('a')).toMatchObject({ key: 'a', size: 1 });
    expect((await backend.list('')).map((o) => o.key)).toEqual(['a']);
    expect(await text(await backend.get('a'))).toBe('A');
    await backend.delete('a');
    expect(inner.objects.has('a')).toBe(false);
    expect(inner.calls).toMatchObject({ stat: 4, list: 3, get: 2, delete: 4 });
  });

  it('gives up after `attempts` tries with the last error', async () => {
    const { inner, backend, delays } = setup({ attempts: 3 });
    inner.failures = { stat: 10 };
    await expect(backend.stat('a')).rejects.toMatchObject({
      code: 'STORAGE_FAILED',
      message: expect.stringMatching(/ECONNRESET/),
    });
    expect(inner.calls.stat).toBe(3);
    expect(delays.length).toBe(2);
  });

  it('does not retry STORAGE_NOT_FOUND', async () => {
    const { inner, backend, delays } = setup();
    await expect(backend.get('missing')).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
    expect(inner.calls.get).toBe(1);
    expect(delays).toEqual([]);
  });

  it('does not retry permanent errors', async () => {
    const { inner, backend } = setup();
    inner.error = permanent;
    inner.failures = { list: 1 };
    await expect(backend.list('')).rejects.toMatchObject({ message: expect.stringMatching(/AccessDenied/) });
    expect(inner.calls.list).toBe(1);
  });

  it('backs off exponentially with jitter, capped at maxDelayMs', async () => {
    const low = setup({ attempts: 6, baseDelayMs: 100, maxDelayMs: 500, random: () => 0 });
    low.inner.failures = { stat: 5 };
    await low.backend.stat('x');
    expect(low.delays).toEqual([50, 100, 200, 250, 250]);
    const high = setup({ attempts: 6, baseDelayMs: 100, maxDelayMs: 500, random: () => 0.999999 });
    high.inner.failures = { stat: 5 };
    await high.backend.stat('x');
    expect(high.delays).toEqual([100, 200, 400, 500, 500]);
  });

  it('logs each retry with the attempt number, without throwing away the error text', async () => {
    const { inner, backend, warnings } = setup();
    inner.failures = { delete: 2 };
    await backend.delete('k');
    expect(warnings.map((w) => [w.op, w.key, w.attempt])).toEqual([
      ['delete', 'k', 1],
      ['delete', 'k', 2],
    ]);
    expect(String(warnings[0]?.err)).toContain('ECONNRESET');
  });

  it('does not retry put of a one-shot stream', async () => {
    const { inner, backend } = setup();
    inner.failures = { put: 1 };
    await expect(backend.put('k', Readable.from([Buffer.from('data')]))).rejects.toMatchObject({
      code: 'STORAGE_FAILED',
    });
    expect(inner.calls.put).toBe(1);
    expect(inner.objects.has('k')).toBe(false);
  });

  it('putFrom retries with a fresh stream each try and destroys the abandoned ones', async () => {
    const { inner, backend } = setup();
    inner.failures = { put: 2 };
    const opened: Readable[] = [];
    const res = await backend.putFrom('k', () => {
      const s = Readable.from([Buffer.from('payload')]);
      opened.push(s);
      return s;
    });
    expect(res).toEqual({ size: 7 });
    expect(inner.objects.get('k')?.toString()).toBe('payload');
    expect(opened.length).toBe(3);
    expect(opened.every((s) => s.destroyed)).toBe(true);
  });

  it('putFrom stops at permanent errors', async () => {
    const { inner, backend } = setup();
    inner.error = permanent;
    inner.failures = { put: 1 };
    let opens = 0;
    await expect(
      backend.putFrom('k', () => {
        opens++;
        return Readable.from([Buffer.from('x')]);
      }),
    ).rejects.toBeInstanceOf(SidecarError);
    expect(opens).toBe(1);
  });

  it('keeps the location and closes the wrapped backend', async () => {
    const { inner, backend } = setup();
    expect(backend.location).toBe('mem:');
    await backend.close();
    expect(inner.closed).toBe(true);
  });

  it('rejects nonsensical options', () => {
    const inner = new FlakyBackend();
    expect(() => withRetry(inner, { attempts: 0, baseDelayMs: 1, maxDelayMs: 1 })).toThrow(RangeError);
    expect(() => withRetry(inner, { attempts: 1.5, baseDelayMs: 1, maxDelayMs: 1 })).toThrow(RangeError);
    expect(() => withRetry(inner, { attempts: 2, baseDelayMs: 10, maxDelayMs: 1 })).toThrow(RangeError);
  });
});

describe('isTransient', () => {
  const wrap = (cause: object) => new SidecarError('STORAGE_FAILED', 'x', undefined, { cause });
  it.each([
    ['a reset socket', wrap(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))],
    [
      'a refused connection (server restarting)',
      wrap(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })),
    ],
    ['an SDK error marked retryable', wrap({ name: 'Whatever', $retryable: {} })],
    ['a 503 answer', wrap({ name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } })],
    ['a 500 answer', wrap({ name: 'InternalError', $metadata: { httpStatusCode: 500 } })],
    ['throttling', wrap({ name: 'SlowDown', $metadata: { httpStatusCode: 503 } })],
    ['a 429 answer', wrap({ name: 'TooManyRequests', $metadata: { httpStatusCode: 429 } })],
    ['a bare socket error', Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })],
  ])('retries %s', (_label, err) => {
    expect(isTransient(err)).toBe(true);
  });

  it.each([
    ['not found', new SidecarError('STORAGE_NOT_FOUND', 'no object')],
    [
      'not found even with a 503 cause',
      new SidecarError('STORAGE_NOT_FOUND', 'x', undefined, { cause: { $retryable: {} } }),
    ],
    ['access denied', wrap({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } })],
    ['a missing bucket', wrap({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } })],
    ['a refused key', new SidecarError('STORAGE_FAILED', 'refusing storage key "../x"')],
    ['a full disk', wrap(Object.assign(new Error('no space'), { code: 'ENOSPC' }))],
    ['a permission problem', wrap(Object.assign(new Error('denied'), { code: 'EACCES' }))],
    ['a plain error', new Error('boom')],
    ['a non-error', 'string'],
  ])('does not retry %s', (_label, err) => {
    expect(isTransient(err)).toBe(false);
  });
});
