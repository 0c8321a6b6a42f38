/**
 * A time in whole milliseconds (what listings and blob lists keep) as utimes takes it. From 1970 on, seconds
 * aimed at the middle of that millisecond: `ms / 1000` lands a fraction of a nanosecond below it as a
 * double, and the file then read back one millisecond early. Before 1970, a Date: Node takes a negative
 * number of seconds for "now" (and libuv carries a negative fraction into the seconds itself).
 */
export function fileTime(ms: number): number | Date {
  return ms >= 0 ? (ms + 0.5) / 1000 : new Date(ms);
}

/**
 * Seconds (a stat time / 1000, a tar header's whole seconds) as utimes takes them: before 1970 a Date (to
 * the millisecond), for the same reason as above.
 */
export function secondsTime(s: number): number | Date {
  return s >= 0 ? s : new Date(Math.floor(s * 1000));
}
