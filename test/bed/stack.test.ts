import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, execOk } from '../harness/docker.js';
import { diffFingerprints, fingerprintDb, fingerprintVolume } from '../harness/fingerprint.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

describe('test bed: Moodle stack factory', () => {
  let stack: MoodleStack;
  beforeAll(async () => {
    stack = await createMoodleStack();
  });
  afterAll(async () => {
    await stack?.remove();
  });

  it('runs mariadb and moodle with Compose labels and project volumes', async () => {
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    const info = await docker().getContainer(stack.containers.moodle).inspect();
    expect(info.Config.Labels['com.docker.compose.project']).toBe(stack.project);
    expect(info.Config.Labels['com.docker.compose.service']).toBe('moodle');
    expect(info.Config.Labels['com.docker.compose.depends_on']).toMatch(/^mariadb:/);
    const mounts = info.Mounts.map((m) => m.Name).sort();
    expect(mounts).toEqual([`${stack.project}_moodle_data`, `${stack.project}_moodledata_data`]);
  });

  it('seeds thousands of rows in several InnoDB tables', async () => {
    const fp = await fingerprintDb(stack.sql, DB.name);
    expect(Object.keys(fp.tables).length).toBeGreaterThanOrEqual(5);
    expect(fp.tables.mdl_user?.rows).toBe(2000);
    expect(fp.tables.mdl_logstore_standard_log?.rows).toBe(5000);
    const engines = await stack.sql(
      `SELECT DISTINCT engine FROM information_schema.tables WHERE table_schema='${DB.name}'`,
    );
    expect(engines.trim()).toBe('InnoDB');
    // The database user the Moodle stand-in uses can read through the network alias.
    const r = await stack.exec('moodle', ['php', '/bitnami/moodle/index.php']);
    expect(r.stdout).toContain('300 courses');
  });

  it('seeds a realistic moodledata tree', async () => {
    const fp = await fingerprintVolume(stack.volumes.moodledata_data);
    const paths = fp.entries.map((e) => e.path);
    const pool = fp.entries.filter((e) => /^filedir\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{40}$/.test(e.path));
    expect(pool.length).toBeGreaterThanOrEqual(100);
    for (const dir of ['cache', 'localcache', 'temp', 'sessions', 'trashdir', 'lock', 'repository/empty']) {
      expect(paths).toContain(dir);
    }
    expect(paths).toContain('.htaccess');
    expect(paths).toContain('lang/de/Übungsblätter é 日本語.txt');
    expect(fp.entries.find((e) => e.path === 'lang/current')).toMatchObject({
      type: 'l',
      link: 'de',
      uid: 1001,
    });
    expect(new Set(fp.entries.map((e) => e.uid))).toEqual(new Set([0, 1, 33, 1001]));
    expect(new Set(fp.entries.filter((e) => e.type === 'f').map((e) => e.mode))).toEqual(
      new Set(['0600', '0644', '0755']),
    );
    expect(fp.entries.some((e) => e.type === 'f' && e.nlink === 2)).toBe(true);
    expect(Math.max(...fp.entries.map((e) => e.size))).toBeGreaterThanOrEqual(6 * 1024 * 1024);
    const code = await fingerprintVolume(stack.volumes.moodle_data);
    expect(code.entries.map((e) => e.path)).toEqual(
      expect.arrayContaining(['config.php', 'version.php', 'admin/cli/maintenance.php']),
    );
  });

  it('maintenance CLI writes and removes climaintenance.html in the dataroot', async () => {
    const exists = async () =>
      (await stack.exec('moodle', ['test', '-f', '/bitnami/moodledata/climaintenance.html'])).exitCode === 0;
    expect(await exists()).toBe(false);
    await execOk(stack.containers.moodle, ['php', '/bitnami/moodle/admin/cli/maintenance.php', '--enable']);
    expect(await exists()).toBe(true);
    const page = await stack.exec('moodle', ['php', '/bitnami/moodle/index.php']);
    expect(page.stdout).toContain('maintenance');
    await execOk(stack.containers.moodle, ['php', '/bitnami/moodle/admin/cli/maintenance.php', '--disable']);
    expect(await exists()).toBe(false);
  });

  it('upgrade.php --is-pending exits 0 when code and database agree, 2 when the code is newer', async () => {
    const check = () =>
      stack.exec('moodle', ['php', '/bitnami/moodle/admin/cli/upgrade.php', '--is-pending']);
    expect((await check()).exitCode).toBe(0);
    await stack.sql("UPDATE mdl_config SET value='2024042200.00' WHERE name='version'");
    expect((await check()).exitCode).toBe(2);
    await stack.sql("UPDATE mdl_config SET value='2024100700.00' WHERE name='version'");
    expect((await check()).exitCode).toBe(0);
  });

  it('fingerprints are stable, and change with one byte or one mode', async () => {
    const v = stack.volumes.moodledata_data;
    const a = await fingerprintVolume(v);
    const b = await fingerprintVolume(v);
    expect(b.digest).toBe(a.digest);
    const target = a.entries.find((e) => e.type === 'f' && e.nlink === 1 && e.path.startsWith('filedir/'));
    if (!target) throw new Error('no pool file');
    const file = `/bitnami/moodledata/${target.path}`;
    // Flip one byte in place, keeping size and mtime.
    await execOk(stack.containers.moodle, [
      'bash',
      '-c',
      `t=$(stat -c %Y "${file}"); printf 'Z' | dd of="${file}" bs=1 seek=10 conv=notrunc status=none; touch -d @$t "${file}"`,
    ]);
    const c = await fingerprintVolume(v);
    expect(c.digest).not.toBe(a.digest);
    expect(diffFingerprints(a, c)).toEqual([
      `${target.path}: sha256 ${target.sha256} -> ${c.entries.find((e) => e.path === target.path)?.sha256}`,
    ]);
    await execOk(stack.containers.moodle, ['chmod', '0640', file]);
    const d = await fingerprintVolume(v);
    expect(diffFingerprints(c, d)).toEqual([`${target.path}: mode 0644 -> 0640`]);
    const dbA = await fingerprintDb(stack.sql, DB.name);
    await stack.sql("UPDATE mdl_user SET lastname='Changed' WHERE id=7");
    const dbB = await fingerprintDb(stack.sql, DB.name);
    expect(dbB.tables.mdl_user?.checksum).not.toBe(dbA.tables.mdl_user?.checksum);
    expect(dbB.tables.mdl_course).toEqual(dbA.tables.mdl_course);
  });
});

describe('test bed: teardown', () => {
  it('removes every container, volume and network of a stack', async () => {
    const s = await createMoodleStack({ seed: false });
    await s.remove();
    const d = docker();
    const containers = await d.listContainers({
      all: true,
      filters: { label: [`com.docker.compose.project=${s.project}`] },
    });
    const volumes = (await d.listVolumes()).Volumes?.filter((v) => v.Name.startsWith(s.project)) ?? [];
    const networks = (await d.listNetworks()).filter((n) => n.Name.startsWith(s.project));
    expect({ containers: containers.length, volumes: volumes.length, networks: networks.length }).toEqual({
      containers: 0,
      volumes: 0,
      networks: 0,
    });
  });
});
