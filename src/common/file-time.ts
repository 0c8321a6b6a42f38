/**
 * A time in whole milliseconds (what listings and blob lists keep) as the seconds utimes takes, aimed at the
 * middle of that millisecond: `ms / 1000` lands a fraction of a nanosecond below it as a double, and the file
 * then read back one millisecond early.
 */
export function fileTime(ms: number): number {
  return (ms + 0.5) / 1000;
}
