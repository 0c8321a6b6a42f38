import { describe, expect, it } from 'vitest';
import type { BackupRun } from '../../../src/backup/context.js';
import { reusable } from '../../../src/backup/reuse.js';
import type { VolumeTarget } from '../../../src/stack/discover.js';

const volume = (name: string): VolumeTarget => ({ name, short: name.replace(/^p_/, ''), mountedBy: [] });
const CODE = volume('p_moodle_data');
const DATA = volume('p_moodledata_data');
const DB = volume('p_mariadb_data');

/** Only what reusable() reads of a run: the setting, the encryption, the store and the site. */
function run(
  over: { reuse?: 'auto' | 'off'; recipients?: string[] | null; encrypted?: boolean; store?: string } = {},
) {
  return {
    ctx: { config: { reuseArchives: over.reuse } },
    encryption: over.encrypted ? { recipients: over.recipients ?? null } : null,
    store: { volumes: new Map(over.store ? [[over.store, {}]] : []) },
    mp: {
      site: {
        moodle: { dataroot: { volume: { name: DATA.name } } },
        database: { container: { mounts: [{ volume: DB.name, destination: '/bitnami/mariadb' }] } },
      },
    },
  } as unknown as BackupRun;
}

describe('reusable: which volumes may reuse an earlier archive', () => {
  it.each<[string, BackupRun, VolumeTarget, string | null, boolean]>([
    ['the code volume, read as a directory', run(), CODE, '/backup/moodle_data', true],
    ['the code volume with the setting left out (auto)', run({ reuse: undefined }), CODE, '/d', true],
    ['the code volume through the archive API (no directory to list)', run(), CODE, null, false],
    ['anything with BACKUP_REUSE_ARCHIVES=off', run({ reuse: 'off' }), CODE, '/d', false],
    ['the dataroot, incremental off (sessions and caches change it every time)', run(), DATA, '/d', false],
    ['a volume whose Moodle files go to the store', run({ store: CODE.name }), CODE, '/d', false],
    ['a volume the database server mounts', run(), DB, '/d', false],
    [
      'the code volume encrypted to recipients',
      run({ encrypted: true, recipients: ['age1x'] }),
      CODE,
      '/d',
      true,
    ],
    [
      'the code volume encrypted with a passphrase',
      run({ encrypted: true, recipients: null }),
      CODE,
      '/d',
      false,
    ],
  ])('%s', (_what, r, v, dir, expected) => {
    expect(reusable(r, v, dir)).toBe(expected);
  });
});
