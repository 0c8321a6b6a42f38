import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { SqlRowCounter } from '../../../src/database/sql-rows.js';

/** The shape mariadb-dump writes with --databases and extended inserts. */
const DUMP = `-- MariaDB dump 10.19  Distrib 10.11.18-MariaDB
/*!40101 SET NAMES utf8mb4 */;
CREATE DATABASE /*!32312 IF NOT EXISTS*/ \`moodle\` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;
USE \`moodle\`;
DROP TABLE IF EXISTS \`mdl_user\`;
CREATE TABLE \`mdl_user\` (
  \`id\` bigint(10) NOT NULL AUTO_INCREMENT,
  \`name\` varchar(100) DEFAULT NULL
) ENGINE=InnoDB;
LOCK TABLES \`mdl_user\` WRITE;
INSERT INTO \`mdl_user\` VALUES (1,'a (b), c'),(2,'it\\'s (x'),(3,'back\\\\'),(4,NULL),(5,0x28296162);
INSERT INTO \`mdl_user\` VALUES (6,'));(');
UNLOCK TABLES;
CREATE TABLE \`mdl_empty\` (
  \`id\` bigint(10) NOT NULL
) ENGINE=InnoDB;
/*!50001 CREATE TABLE \`v_view\` (
  \`id\` tinyint NOT NULL
) */;
USE \`other\`;
CREATE TABLE \`t\` (
  \`x\` int
);
INSERT INTO \`t\` VALUES (1),(2);
CREATE TABLE \`newer\` (
  \`x\` int
);
INSERT INTO \`newer\` VALUES
(1,'a;b'),
(2,'c\\n');
-- Dump completed on 2026-11-29  8:00:00
`;

async function count(text: string, chunk: number): Promise<Record<string, number>> {
  const buf = Buffer.from(text, 'utf8');
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) chunks.push(buf.subarray(i, i + chunk));
  const c = new SqlRowCounter();
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), c, async (src: AsyncIterable<Buffer>) => {
    for await (const x of src) out.push(x);
  });
  expect(Buffer.concat(out).equals(buf)).toBe(true);
  return c.tables;
}

describe('SqlRowCounter', () => {
  it('counts rows per database.table (VALUES on the same line or on the next), ignoring parentheses and semicolons inside strings, at any chunking', async () => {
    const expected = { 'moodle.mdl_user': 6, 'moodle.mdl_empty': 0, 'other.t': 2, 'other.newer': 2 };
    for (const chunk of [1, 7, 64, 100_000]) expect(await count(DUMP, chunk)).toEqual(expected);
  });
});

describe('version checks before a restore', () => {
  it('compares dotted versions numerically and warns only about older running software', async () => {
    const { compareVersions, olderThanSnapshot } = await import('../../../src/moodle/versions.js');
    expect(compareVersions('10.11.6-MariaDB-0+deb12u1', '10.6.18-MariaDB')).toBeGreaterThan(0);
    expect(compareVersions('2024100700.00', '2024100700')).toBe(0);
    expect(compareVersions('11.4.2', '11.4.10')).toBeLessThan(0);
    const snap = {
      stack: {
        services: [],
        moodle: { version: '2024100700.00', release: '4.5' },
        mariadb: { version: '11.4.2-MariaDB' },
      },
    };
    expect(
      olderThanSnapshot(snap, { moodle: { version: '2024100700.00', release: '4.5' }, mariadb: '11.4.2' }),
    ).toEqual([]);
    const w = olderThanSnapshot(snap, {
      moodle: { version: '2024042200.00', release: '4.4' },
      mariadb: '10.11.6-MariaDB',
    });
    expect(w).toHaveLength(2);
    expect(w[0]).toContain('running Moodle (4.4) is older');
    expect(w[1]).toContain('running MariaDB (10.11.6-MariaDB) is older');
  });
});
