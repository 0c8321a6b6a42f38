/** fn(0) … fn(count - 1), at most `limit` at a time; the first failure stops the rest and is thrown. */
export function inParallel(count: number, limit: number, fn: (n: number) => Promise<void>): Promise<void> {
  return eachInParallel(
    (function* () {
      for (let n = 0; n < count; n++) yield n;
    })(),
    Math.min(limit, count),
    fn,
  );
}

/**
 * fn(item) for each of `items` (read once, no array of them made), at most `limit` at a time. The first failure
 * starts no more, waits for those running (none is left half done behind the caller), and is thrown.
 */
export async function eachInParallel<T>(
  items: Iterator<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let failed = false;
  const worker = async () => {
    for (let next = items.next(); !failed && !next.done; next = items.next()) {
      try {
        await fn(next.value);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: limit }, worker));
  const err = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (err) throw err.reason;
}
