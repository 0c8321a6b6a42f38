import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StateStore } from '../../../src/stack/state.js';

describe('state file: open multipart uploads', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('records uploads as they start and drops them as they end, also when both happen at once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbst-state-'));
    const store = new StateStore(dir);
    await store.write({ runId: 'r', operation: 'backup', startedAt: '', pid: 1, quiesced: [] });
    const rec = (n: number) => ({
      bucket: 'b',
      key: `p/k${n}`,
      uploadId: `u${n}`,
      endpoint: 'http://127.0.0.1:1',
    });
    // Unawaited one after another: without the store's own queue, concurrent read-modify-writes lose records.
    await Promise.all([1, 2, 3, 4, 5].map((n) => store.uploadStarted(rec(n))));
    expect((await store.read())?.uploads?.map((u) => u.uploadId).sort()).toEqual([
      'u1',
      'u2',
      'u3',
      'u4',
      'u5',
    ]);
    await Promise.all([store.uploadEnded('u2'), store.uploadStarted(rec(6)), store.uploadEnded('u4')]);
    expect((await store.read())?.uploads).toEqual([rec(1), rec(3), rec(5), rec(6)]);
    await Promise.all(['u1', 'u3', 'u5', 'u6'].map((id) => store.uploadEnded(id)));
    const s = await store.read();
    expect(s?.runId).toBe('r');
    expect(s && 'uploads' in s).toBe(false);
  });

  it('records nothing when no run owns the state file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbst-state-'));
    const store = new StateStore(dir);
    await store.uploadStarted({ bucket: 'b', key: 'k', uploadId: 'u', endpoint: '' });
    expect(await store.read()).toBeNull();
  });
});
