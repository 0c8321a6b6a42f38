/** Plain text tables for the terminal (stdout), columns padded; fitted to a width when one is given. */
export interface Fit {
  /** Columns available (a terminal's width); undefined: as wide as the cells need (pipes, files). */
  width?: number;
  /** The column whose cells wrap onto further lines (at ", " and spaces) to fit. */
  wrap: number;
  /** Columns that may be left out, in this order, when the table cannot fit otherwise. */
  drop?: number[];
}

const GAP = 2;

export function table(headers: string[], rows: string[][], fit?: Fit): string {
  if (!fit?.width || naturalWidth(headers, rows) <= fit.width) return render(headers, rows);
  let keep = headers.map((_, i) => i);
  for (const d of fit.drop ?? []) {
    if (fitsWrapped(headers, rows, keep, fit)) break;
    keep = keep.filter((i) => i !== d);
  }
  const pick = (r: string[]) => keep.map((i) => r[i] ?? '');
  const wrap = keep.indexOf(fit.wrap);
  const h = pick(headers);
  const rs = rows.map(pick);
  const others = h.reduce((a, _, i) => (i === wrap ? a : a + colWidth(h, rs, i)), 0);
  const room = Math.max(fit.width - others - GAP * (h.length - 1), minWrap(h, rs, wrap));
  const lines = rs.flatMap((r) =>
    wrapCell(r[wrap] ?? '', room).map((part, n) => r.map((c, i) => (i === wrap ? part : n === 0 ? c : ''))),
  );
  return render(h, lines);
}

function render(headers: string[], rows: string[][]): string {
  const widths = headers.map((_, i) => colWidth(headers, rows, i));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join(' '.repeat(GAP))
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function colWidth(headers: string[], rows: string[][], i: number): number {
  return Math.max((headers[i] ?? '').length, ...rows.map((r) => (r[i] ?? '').length));
}

function naturalWidth(headers: string[], rows: string[][]): number {
  return headers.reduce((a, _, i) => a + colWidth(headers, rows, i), GAP * (headers.length - 1));
}

/** Whether the kept columns fit once the wrapping column is at its narrowest. */
function fitsWrapped(headers: string[], rows: string[][], keep: number[], fit: Fit): boolean {
  const h = keep.map((i) => headers[i] ?? '');
  const rs = rows.map((r) => keep.map((i) => r[i] ?? ''));
  const wrap = keep.indexOf(fit.wrap);
  const total = h.reduce(
    (a, _, i) => a + (i === wrap ? minWrap(h, rs, i) : colWidth(h, rs, i)),
    GAP * (h.length - 1),
  );
  return total <= (fit.width ?? Number.POSITIVE_INFINITY);
}

/** The wrapping column can shrink to its header or its longest word, no further. */
function minWrap(headers: string[], rows: string[][], i: number): number {
  const words = rows.flatMap((r) => wordsOf(r[i] ?? ''));
  return Math.max((headers[i] ?? '').length, ...words.map((w) => w.trimEnd().length));
}

/** Words, each with the comma and space after it: "a,b" → "a,", "b"; "ok, 3 files" → "ok, ", "3 ", "files". */
function wordsOf(cell: string): string[] {
  return cell.match(/[^ ,]*,? ?/g)?.filter((w) => w !== '') ?? [];
}

function wrapCell(cell: string, width: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const w of wordsOf(cell)) {
    if (cur && (cur + w).trimEnd().length > width) {
      out.push(cur.trimEnd());
      cur = '';
    }
    cur += w;
  }
  out.push(cur.trimEnd());
  return out;
}

/** stdout's width when it is a terminal; undefined when output goes to a pipe or a file. */
export function terminalWidth(): number | undefined {
  return process.stdout.isTTY ? process.stdout.columns || 80 : undefined;
}

export { formatBytes, formatDuration } from '../observe/format.js';
