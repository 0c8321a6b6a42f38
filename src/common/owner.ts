import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAlive } from './processes.js';

/**
 * Who runs a piece of work (a run's state file, the run lock, a helper container's label), in a form a
 * restart cannot fake. A PID alone is not enough: inside a container PIDs start again from 1 on every
 * restart and the host name stays, so a dead run's PID is often alive again as the new `serve`, a health
 * check or the next `docker exec`. The kernel's boot id and the process's start time (clock ticks after
 * boot, /proc/<pid>/stat field 22) tell a reused PID apart from the process that wrote the identity.
 */
export interface Owner {
  /** os.hostname(): the sidecar container's, or the machine's for a CLI run on it. */
  host: string;
  pid: number;
  /** /proc/sys/kernel/random/boot_id; absent where there is no /proc (then only the PID is compared). */
  bootId?: string;
  /** Field 22 of /proc/<pid>/stat, as written (a decimal string: no rounding of large tick counts). */
  startTime?: string;
}

/** alive / dead; foreign: another host's process, whose life cannot be told from here. */
export type Liveness = 'alive' | 'dead' | 'foreign';

/**
 * The start time (field 22) of a /proc/<pid>/stat line. Field 2 is the command name in parentheses and may
 * itself contain spaces and parentheses, so the fields are counted after the last ')'.
 */
export function parseStartTime(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ')': field 3 (state) is the first, so field 22 is the 20th.
  const value = stat
    .slice(close + 1)
    .trim()
    .split(/\s+/)[19];
  return value && /^\d+$/.test(value) ? value : undefined;
}

/** undefined: no /proc here, or no such process. */
function readStartTime(pid: number): string | undefined {
  try {
    return parseStartTime(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The identity of the process `pid` of this host as it is now (pid only where there is no /proc). */
export function ownerOf(pid: number): Owner {
  const bootId = readBootId();
  const startTime = readStartTime(pid);
  return { host: hostname(), pid, ...(bootId ? { bootId } : {}), ...(startTime ? { startTime } : {}) };
}

let self: Owner | undefined;

/** This process's identity (read once: none of it changes while the process lives). */
export function currentOwner(): Owner {
  self ??= ownerOf(process.pid);
  return self;
}

/** Whether `o` is this very process (not merely one with the same PID). */
export function isSelf(o: Owner): boolean {
  const me = currentOwner();
  return (
    o.host === me.host &&
    o.pid === me.pid &&
    (o.bootId === undefined || o.bootId === me.bootId) &&
    (o.startTime === undefined || o.startTime === me.startTime)
  );
}

/**
 * Whether the process `o` names still runs. Same host, same boot, a process with that PID, and the same
 * start time. An identity without boot id or start time (written where there is no /proc, or by a version
 * before these were recorded) falls back to the PID alone, the old rule, with its weakness in containers.
 */
export function ownerLiveness(o: Owner): Liveness {
  if (o.host !== hostname()) return 'foreign';
  const me = currentOwner();
  if (o.bootId && me.bootId && o.bootId !== me.bootId) return 'dead'; // the machine rebooted since
  if (!isAlive(o.pid)) return 'dead';
  if (o.startTime === undefined) return 'alive';
  const now = readStartTime(o.pid);
  // Unreadable /proc/<pid>/stat of a process that exists (e.g. hidepid): only the PID can be compared.
  if (now === undefined) return 'alive';
  return now === o.startTime ? 'alive' : 'dead';
}

/** An identity from the old formats (state file `pid`, lock `host` + `pid`): judged by the PID alone. */
export function legacyOwner(pid: number, host: string = hostname()): Owner {
  return { host, pid };
}

/**
 * A helper label's value: `host:pid:startTime:bootId`, or `host:pid` without /proc (the old format, which
 * older versions wrote and parseOwnerLabel still reads). Host names and boot ids hold no ':'.
 */
export function ownerLabel(o: Owner = currentOwner()): string {
  return o.startTime && o.bootId ? `${o.host}:${o.pid}:${o.startTime}:${o.bootId}` : `${o.host}:${o.pid}`;
}

export function parseOwnerLabel(value: string | undefined): Owner | undefined {
  const parts = value?.split(':') ?? [];
  if (parts.length !== 2 && parts.length !== 4) return undefined;
  const [host = '', pidText = '', startTime, bootId] = parts;
  const pid = Number(pidText);
  if (!host || !Number.isInteger(pid) || pid <= 0) return undefined;
  if (parts.length === 2) return legacyOwner(pid, host);
  if (!/^\d+$/.test(startTime ?? '') || !bootId) return undefined;
  return { host, pid, startTime, bootId };
}
