/**
 * mariadb-check prints `db.table   OK`, or `db.table` followed by `Msg_type : text` lines. A table passes
 * when its status is OK and no `error` line follows; warnings alone do not fail it but are reported.
 */
export function parseCheck(output: string): { tables: number; bad: string[] } {
  const tables: { name: string; ok: boolean; errors: string[]; notes: string[] }[] = [];
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    const msg = line.match(/^(\w+)\s*:\s?(.*)$/);
    const current = tables[tables.length - 1];
    if (msg && current && !/^\S+\.\S+/.test(line)) {
      const [, type = '', text = ''] = msg;
      const t = type.toLowerCase();
      if (t === 'status') {
        if (text.trim() === 'OK') current.ok = true;
        else current.errors.push(text.trim());
      } else if (t === 'error') current.errors.push(text.trim());
      else current.notes.push(`${type}: ${text.trim()}`);
      continue;
    }
    const m = line.match(/^(\S+)\s+OK\s*$/);
    tables.push({ name: m?.[1] ?? line.trim(), ok: Boolean(m), errors: [], notes: [] });
  }
  const bad = tables
    .filter((t) => !t.ok || t.errors.length > 0)
    .map((t) => `${t.name} (${[...t.notes, ...t.errors].join(', ') || 'no OK'})`);
  return { tables: tables.length, bad };
}
