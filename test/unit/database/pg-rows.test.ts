import { describe, expect, it } from 'vitest';
import { PgRowCounter } from '../../../src/database/pg-rows.js';
import { piped } from '../../harness/streams.js';

/** A pg_dump --create plain dump of two databases, shaped as pg_dump 15 writes it. */
const DUMP = `--
-- PostgreSQL database dump
--
\\restrict k3y
SET statement_timeout = 0;
DROP DATABASE IF EXISTS moodle;
CREATE DATABASE moodle WITH TEMPLATE = template0 ENCODING = 'UTF8';
\\connect moodle
CREATE TABLE public.mdl_user (id bigint NOT NULL, name text);
COPY public.mdl_user (id, name) FROM stdin;
1\tanna
2\tline\\nbreak and COPY public.x (a) FROM stdin;
3\t\\\\.
\\.
COPY public."Odd ""name""" (id) FROM stdin;
\\.
-- PostgreSQL database dump complete
\\connect -reuse-previous=on "dbname='we''ird'"
COPY public.t FROM stdin;
7
\\.
`;

async function count(text: string, chunk: number): Promise<Record<string, number>> {
  const buf = Buffer.from(text);
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) parts.push(buf.subarray(i, i + chunk));
  const counter = new PgRowCounter();
  expect((await piped(parts, counter)).equals(buf)).toBe(true);
  return counter.tables;
}

describe('PgRowCounter', () => {
  it('counts the lines of each COPY block per database, empty tables as 0, whatever the chunking', async () => {
    for (const chunk of [1, 3, 7, 64, 1 << 16]) {
      expect(await count(DUMP, chunk)).toEqual({
        'moodle.public.mdl_user': 3,
        'moodle.public."Odd ""name"""': 0,
        "we'ird.public.t": 1,
      });
    }
  });
});
