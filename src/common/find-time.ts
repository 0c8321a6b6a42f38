/**
 * find's `%T@` or `%C@` (`<seconds>.<fraction>`) in whole milliseconds, rounded down from the digits
 * themselves (as a double, x.123999999 s would round up to the next ms); NaN when it is not one. find prints
 * the kernel's seconds and nanoseconds side by side, so a time before 1970 reads `-2.7500000000` for
 * -1.25 s (-2 s and 0.75 s after it), not -2.75 s.
 */
export function findTimeMs(text: string): number {
  const minus = text.startsWith('-');
  const dot = text.indexOf('.');
  const whole = text.slice(minus ? 1 : 0, dot < 0 ? text.length : dot);
  const fraction = dot < 0 ? '' : text.slice(dot + 1);
  if (!/^\d+$/.test(whole) || !/^\d*$/.test(fraction)) return Number.NaN;
  const seconds = Number(whole) * (minus ? -1 : 1);
  return seconds * 1000 + Number(fraction.slice(0, 3).padEnd(3, '0'));
}
