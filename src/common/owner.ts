import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { ownContainerId } from './container-id.js';
import { isAlive } from './processes.js';

/**
 * Who runs a piece of work (a run's state file, the run lock, a helper container's label), in a form a
 * restart cannot fake. A PID alone is not enough: inside a container PIDs start again from 1 on every
 * restart and the host name stays, so a dead run's PID is often alive again as the new `serve`, a health
 * check or the next `docker exec`. The kernel's boot id and the process's start time (clock ticks after
 * boot, /proc/<pid>/stat field 22) tell a reused PID apart from the process that wrote the identity.
 * Nor is the host name: sidecars with `network_mode: host` share the machine's, with the machine and with
 * each other, while each has its own PID namespace, where a PID names another process. The namespace (and
 * the container, which keeps its name across a restart but not its namespace) tells those apart.
 */
export interface Owner {
  /** os.hostname(): the sidecar container's, or the machine's for a CLI run on it. */
  host: string;
  pid: number;
  /** /proc/sys/kernel/random/boot_id; absent where there is no /proc (then only the PID is compared). */
  bootId?: string;
  /** Field 22 of /proc/<pid>/stat, as written (a decimal string: no rounding of large tick counts). */
  startTime?: string;
  /**
   * The inode of the process's PID namespace (/proc/<pid>/ns/pid reads `pid:[4026531836]`), in decimal.
   * Absent in identities written before it was recorded: their PID is taken to be one of ours, the old rule.
   */
  pidNs?: string;
  /** The id of the Docker container the process runs in (from its mount table); absent outside one. */
  container?: string;
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

/** The inode number in a /proc/<pid>/ns/pid link (`pid:[4026531836]`). */
export function parsePidNs(link: string): string | undefined {
  return /^pid:\[(\d+)\]$/.exec(link.trim())?.[1];
}

/** undefined: no /proc here, or the process is gone or not ours to inspect. */
function readPidNs(pid: number): string | undefined {
  try {
    return parsePidNs(readlinkSync(`/proc/${pid}/ns/pid`));
  } catch {
    return undefined;
  }
}

function readContainer(pid: number): string | undefined {
  try {
    return ownContainerId(readFileSync(`/proc/${pid}/mountinfo`, 'utf8')) ?? undefined;
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
  const pidNs = readPidNs(pid);
  const container = readContainer(pid);
  return {
    host: hostname(),
    pid,
    ...(bootId ? { bootId } : {}),
    ...(startTime ? { startTime } : {}),
    ...(pidNs ? { pidNs } : {}),
    ...(container ? { container } : {}),
  };
}

let self: Owner | undefined;

/** This process's identity (read once: none of it changes while the process lives). */
export function currentOwner(): Owner {
  self ??= ownerOf(process.pid);
  return self;
}

/** Whether `o` is this very process (not merely one with the same PID, maybe in another namespace). */
export function isSelf(o: Owner, me: Owner = currentOwner()): boolean {
  return (
    o.host === me.host &&
    o.pid === me.pid &&
    (o.bootId === undefined || o.bootId === me.bootId) &&
    (o.startTime === undefined || o.startTime === me.startTime) &&
    (o.pidNs === undefined || o.pidNs === me.pidNs) &&
    (o.container === undefined || o.container === me.container)
  );
}

/**
 * Whether the process `o` names still runs, as this process (`me`) can tell. Same host, same boot, same
 * PID namespace, a process with that PID, and the same start time. An identity without boot id, start time
 * or namespace (written where there is no /proc, or by a version before these were recorded) falls back to
 * what it has, down to the PID alone, the old rule, with its weakness in containers.
 */
export function ownerLiveness(o: Owner, me: Owner = currentOwner()): Liveness {
  if (o.host !== me.host) return 'foreign';
  if (o.bootId && me.bootId && o.bootId !== me.bootId) return 'dead'; // the machine rebooted since
  if (o.pidNs && me.pidNs && o.pidNs !== me.pidNs) {
    // Its PID means nothing in our namespace, and its processes are not ours to see: another sidecar on
    // this host's network, or the machine itself. But a container has one PID namespace at a time
    // (`docker exec` joins it): the same container in another one ran before a restart, which ended it.
    return o.container && o.container === me.container ? 'dead' : 'foreign';
  }
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
 * A helper label's value: `host:pid:startTime:bootId:pidNs:container` (container empty outside one). Where
 * the namespace cannot be read, `host:pid:startTime:bootId`, and without /proc `host:pid`: the older formats,
 * which older versions wrote and parseOwnerLabel still reads, each with its old rule. Host names, boot ids
 * and container ids hold no ':'.
 */
export function ownerLabel(o: Owner = currentOwner()): string {
  if (!o.startTime || !o.bootId) return `${o.host}:${o.pid}`;
  const base = `${o.host}:${o.pid}:${o.startTime}:${o.bootId}`;
  return o.pidNs ? `${base}:${o.pidNs}:${o.container ?? ''}` : base;
}

export function parseOwnerLabel(value: string | undefined): Owner | undefined {
  const parts = value?.split(':') ?? [];
  if (parts.length !== 2 && parts.length !== 4 && parts.length !== 6) return undefined;
  const [host = '', pidText = '', startTime, bootId, pidNs, container] = parts;
  const pid = Number(pidText);
  if (!host || !Number.isInteger(pid) || pid <= 0) return undefined;
  if (parts.length === 2) return legacyOwner(pid, host);
  if (!/^\d+$/.test(startTime ?? '') || !bootId) return undefined;
  if (parts.length === 4) return { host, pid, startTime, bootId };
  if (!/^\d+$/.test(pidNs ?? '') || !/^([0-9a-f]{64})?$/.test(container ?? '')) return undefined;
  return { host, pid, startTime, bootId, pidNs, ...(container ? { container } : {}) };
}
