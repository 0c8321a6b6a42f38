import { splitKeys } from './age-keys.js';

/**
 * Parsers for environment variable values: each checks the form (integers, enums, durations) and says what
 * it expected, so env.ts can name the variable in its error.
 */

export type Parsed = { ok: true; value: unknown } | { ok: false; expected: string };

const MiB = 1024 * 1024;

export const text = (raw: string): Parsed => ({ ok: true, value: raw });

export const oneOf =
  (values: Record<string, string>) =>
  (raw: string): Parsed => {
    const v = values[raw.trim().toLowerCase()];
    return v === undefined
      ? { ok: false, expected: `one of ${Object.keys(values).join(', ')}` }
      : { ok: true, value: v };
  };

export const same = (...values: string[]) => oneOf(Object.fromEntries(values.map((v) => [v, v])));

export function count(raw: string): Parsed {
  const t = raw.trim();
  const n = Number(t);
  return /^\d+$/.test(t) && Number.isSafeInteger(n)
    ? { ok: true, value: n }
    : { ok: false, expected: 'an integer ≥ 0' };
}

/** Any integer; its range depends on the codec and is checked by the schema. */
export function integer(raw: string): Parsed {
  const t = raw.trim();
  return /^-?\d+$/.test(t) ? { ok: true, value: Number(t) } : { ok: false, expected: 'an integer' };
}

/** offen's BACKUP_RETENTION_DAYS defaults to -1 ("no pruning"); -1 means "off" here too. */
export function retentionDays(raw: string): Parsed {
  if (raw.trim() === '-1') return { ok: true, value: 0 };
  const r = count(raw);
  return r.ok ? r : { ok: false, expected: 'an integer ≥ 0 (or -1 for off)' };
}

export function partSizeMb(raw: string): Parsed {
  const r = count(raw);
  return r.ok && (r.value as number) >= 5
    ? { ok: true, value: (r.value as number) * MiB }
    : { ok: false, expected: 'an integer number of MiB ≥ 5 (S3 minimum part size)' };
}

/** Go's strconv.ParseBool, which offen uses. */
const bool = oneOf({ true: 'true', t: 'true', '1': 'true', false: 'false', f: 'false', '0': 'false' });
export const boolean = (raw: string): Parsed => {
  const r = bool(raw);
  return r.ok ? { ok: true, value: r.value === 'true' } : { ok: false, expected: 'true or false' };
};

/** age keys: comma, space or newline separated; `#` comment lines as in age's key files. */
export function keys(raw: string): Parsed {
  return { ok: true, value: splitKeys(raw) };
}

export function list(raw: string): Parsed {
  return { ok: true, value: raw.split(',').flatMap((s) => (s.trim() ? [s.trim()] : [])) };
}

/** offen's AWS_ENDPOINT is host[:port]; the protocol comes from AWS_ENDPOINT_PROTO. */
export function endpointHost(raw: string): Parsed {
  const t = raw.trim();
  return /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.test(t)
    ? { ok: true, value: t }
    : {
        ok: false,
        expected: 'host[:port] without protocol or path (set the protocol in AWS_ENDPOINT_PROTO)',
      };
}

const GO_UNITS_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/**
 * A Go time.Duration string ('90s', '5m', '1m30s', '1.5h') as whole seconds, rounded up so the container
 * never gets less time than asked. A bare integer is taken as seconds (offen would reject it).
 */
export function parseGoDuration(raw: string): number | undefined {
  const t = raw.trim().replace(/^\+/, '');
  if (/^\d+$/.test(t)) return Number(t);
  if (!/^((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/.test(t)) return undefined;
  let ns = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    ns += Math.round(Number(m[1]) * (GO_UNITS_NS[m[2] as string] as number));
  }
  return Math.ceil(ns / 1e9);
}

/** BACKUP_NOTIFY_ON: 'failure,success,stale', any subset, any case. */
export function notifyEvents(raw: string): Parsed {
  const events = raw.split(',').flatMap((s) => (s.trim() ? [s.trim().toLowerCase()] : []));
  return events.every((e) => e === 'failure' || e === 'success' || e === 'stale')
    ? { ok: true, value: [...new Set(events)] }
    : { ok: false, expected: 'a comma-separated list of failure, success, stale' };
}

export function duration(raw: string): Parsed {
  const s = parseGoDuration(raw);
  return s === undefined
    ? { ok: false, expected: "a duration such as '90s', '5m' or '1m30s' (or whole seconds)" }
    : { ok: true, value: s };
}
