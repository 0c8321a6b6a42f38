import { readdirSync, readFileSync } from 'node:fs';

/**
 * Peak memory of a pipeline's processes, sampled from /proc: the main process (the sidecar's node, or the
 * baseline's shell) and, apart from it, the children it runs (tar, zstd, …). Each process's `VmHWM` is the
 * kernel's own high-water mark of its resident set, so a sample taken any time before the process exits
 * sees its peak; the children's figure is the highest sum of the peaks of children alive at the same time.
 */
export interface MemoryPeaks {
  /** VmHWM of the main process, kB (0 when never seen). */
  mainKb: number;
  /** Highest sum over the children alive together of their VmHWM, kB. */
  childrenKb: number;
  /** Highest VmHWM per child command name (`comm`), kB. */
  byName: Record<string, number>;
}

interface Status {
  name: string;
  hwmKb: number;
}

function status(pid: number): Status | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const name = /^Name:\s+(.*)$/m.exec(s)?.[1] ?? '?';
    // Kernel threads and zombies have no VmHWM line: nothing resident to count.
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(s);
    return { name, hwmKb: hwm ? Number(hwm[1]) : 0 };
  } catch {
    return undefined;
  }
}

/**
 * The descendants of one process, kept up to date by `scan()`. A process's parent is read once (from
 * /proc/<pid>/stat) and cached, so a scan costs one readdir of /proc plus a read for each new pid: cheap
 * enough to run every 50 ms (this kernel has no /proc/<pid>/task/<pid>/children).
 */
export class ProcTree {
  private readonly ppid = new Map<number, number>();

  constructor(private readonly root: number) {}

  scan(): number[] {
    const live = new Set<number>();
    for (const e of readdirSync('/proc')) {
      if (e.charCodeAt(0) > 57) continue; // not a pid (self, sys, …)
      const pid = Number(e);
      live.add(pid);
      if (this.ppid.has(pid)) continue;
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        // The command name may hold spaces and parentheses: ppid is the 2nd field after the last ')'.
        this.ppid.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      } catch {
        // gone meanwhile
      }
    }
    for (const pid of this.ppid.keys()) if (!live.has(pid)) this.ppid.delete(pid);
    const out: number[] = [];
    for (const pid of live) {
      // Walk up to the root (or to a process outside the tree); depth is small.
      for (let p = this.ppid.get(pid), n = 0; p !== undefined && n < 64; p = this.ppid.get(p), n++) {
        if (p === this.root) {
          out.push(pid);
          break;
        }
        if (p <= 1) break;
      }
    }
    return out;
  }
}

/**
 * Accumulates peaks over samples. `pids` lists the processes to look at now: the first one named `main`
 * (or the given main pid) counts as the main process, every other one as a child.
 */
export class MemorySampler {
  private readonly peaks: MemoryPeaks = { mainKb: 0, childrenKb: 0, byName: {} };
  private readonly hwm = new Map<number, number>();

  constructor(private readonly isMain: (pid: number, name: string) => boolean) {}

  sample(pids: readonly number[]): void {
    let together = 0;
    for (const pid of pids) {
      const s = status(pid);
      if (!s) continue;
      if (this.isMain(pid, s.name)) {
        this.peaks.mainKb = Math.max(this.peaks.mainKb, s.hwmKb);
        continue;
      }
      const hwm = Math.max(this.hwm.get(pid) ?? 0, s.hwmKb);
      this.hwm.set(pid, hwm);
      together += hwm;
      this.peaks.byName[s.name] = Math.max(this.peaks.byName[s.name] ?? 0, hwm);
    }
    this.peaks.childrenKb = Math.max(this.peaks.childrenKb, together);
  }

  result(): MemoryPeaks {
    return { ...this.peaks, byName: { ...this.peaks.byName } };
  }
}

/** The highest of each figure over several runs (each run's peaks are its own). */
export function mergePeaks(runs: readonly (MemoryPeaks | undefined)[]): MemoryPeaks {
  const out: MemoryPeaks = { mainKb: 0, childrenKb: 0, byName: {} };
  for (const m of runs) {
    if (!m) continue;
    out.mainKb = Math.max(out.mainKb, m.mainKb);
    out.childrenKb = Math.max(out.childrenKb, m.childrenKb);
    for (const [n, kb] of Object.entries(m.byName)) out.byName[n] = Math.max(out.byName[n] ?? 0, kb);
  }
  return out;
}

/** "zstd 24, tar 3" (MB), largest first: which children the column's figure is made of. */
export function describeChildren(byName: Record<string, number>): string {
  return Object.entries(byName)
    .filter(([, kb]) => kb > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([n, kb]) => `${n} ${Math.round(kb / 1024)}`)
    .join(', ');
}

/** The pids in a container's cgroup (cgroup v1 `pids` or `memory` controller, or v2), or undefined. */
export function containerPidsFile(containerId: string): string | undefined {
  const candidates = [
    `/sys/fs/cgroup/pids/docker/${containerId}/cgroup.procs`,
    `/sys/fs/cgroup/memory/docker/${containerId}/cgroup.procs`,
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope/cgroup.procs`,
    `/sys/fs/cgroup/docker/${containerId}/cgroup.procs`,
  ];
  for (const f of candidates) {
    try {
      readFileSync(f, 'utf8');
      return f;
    } catch {
      // not this layout
    }
  }
  return undefined;
}

export function readPids(file: string): number[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds a container's cgroup has used (cgroup v1 cpuacct, or v2 cpu.stat), or undefined. */
export function containerCpuS(containerId: string): number | undefined {
  for (const f of [
    `/sys/fs/cgroup/cpuacct/docker/${containerId}/cpuacct.usage`,
    `/sys/fs/cgroup/cpu,cpuacct/docker/${containerId}/cpuacct.usage`,
  ]) {
    try {
      return Number(readFileSync(f, 'utf8').trim()) / 1e9;
    } catch {
      // not this layout
    }
  }
  for (const f of [
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope/cpu.stat`,
    `/sys/fs/cgroup/docker/${containerId}/cpu.stat`,
  ]) {
    try {
      const m = /^usage_usec (\d+)/m.exec(readFileSync(f, 'utf8'));
      if (m) return Number(m[1]) / 1e6;
    } catch {
      // not this layout
    }
  }
  return undefined;
}
