import { describe, expect, it } from 'vitest';
import { datarootOn, mountOf } from '../../../src/moodle/dataroot.js';
import { datarootRules } from '../../../src/moodle/excludes.js';
import { phpUser } from '../../../src/moodle/locate.js';

describe('phpUser: Moodle CLI runs as the site does', () => {
  it.each([
    ['the image user when not root', 'nobody', [{ comm: 'nginx', ids: '101:101' }], 'nobody'],
    ['a numeric user too', '1001:1001', [], '1001:1001'],
    [
      'PHP-FPM workers over nginx',
      '',
      [
        { comm: 'nginx', ids: '101:101' },
        { comm: 'php-fpm8.2', ids: '33:33' },
      ],
      '33:33',
    ],
    ['Apache workers of a root container', 'root', [{ comm: 'apache2', ids: '1:1' }], '1:1'],
    ['the container default when nothing runs as another user', '0', [], undefined],
  ])('%s', (_what, configUser, web, expected) => {
    expect(phpUser(configUser || undefined, web).user).toBe(expected);
  });
});

describe('the dataroot mapped to its volume', () => {
  const mounts = [
    { type: 'volume', volume: 'p_data', destination: '/var/lib/sitedata' },
    { type: 'bind', destination: '/var/www/html' },
    { type: 'volume', volume: 'p_deep', destination: '/var/lib/sitedata/deep' },
  ];
  it('takes the deepest mount and the path inside it', () => {
    expect(mountOf(mounts, '/var/lib/sitedata/moodle')?.subpath).toBe('moodle');
    expect(mountOf(mounts, '/var/lib/sitedata/deep/x/')?.mount.volume).toBe('p_deep');
    expect(mountOf(mounts, '/var/lib/sitedataX')).toBeNull();
  });
  it('prefers the real path (a symlinked dataroot) and says why no volume', () => {
    expect(datarootOn(mounts, '/moodledata', '/var/lib/sitedata', 'cfg.php').volume).toEqual({
      name: 'p_data',
      destination: '/var/lib/sitedata',
      subpath: '',
    });
    expect(datarootOn(mounts, '/var/www/html/data', '/var/www/html/data', 'cfg.php').note).toMatch(
      /bind mount/,
    );
    expect(datarootOn(mounts, '/srv/x', '/srv/x', 'cfg.php').note).toMatch(/own file system/);
  });
  it('prefixes the Moodle excludes with the path inside the volume', () => {
    expect(datarootRules('moodle')).toContain('moodle/cache/');
    expect(datarootRules('')).toContain('cache/');
  });
});
