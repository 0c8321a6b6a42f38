import { readFileSync } from 'node:fs';

/**
 * This process's peak resident set, in MB: the kernel's high-water mark of its own memory (VmHWM in
 * /proc/self/status). Not getrusage's ru_maxrss (process.resourceUsage().maxRSS): Linux carries that one over
 * from the process this one was forked from, across exec — a sidecar started by a 640 MB parent reported
 * 604 MB with a VmHWM of 39 MB. Elsewhere than Linux, ru_maxrss is all there is.
 */
export function peakRssMb(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Math.round(Number(m[1]) / 1024);
  } catch {
    // no procfs
  }
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
