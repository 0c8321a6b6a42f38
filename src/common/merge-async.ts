/**
 * The items of several async iterables as each comes, so their producers (child processes, say) run at once
 * instead of one after the other. Order between sources is arrival order. The first failure is thrown after
 * the other sources were closed (their `finally` blocks ran: a child killed, not left writing to a pipe).
 */
export async function* mergeAsync<T>(sources: readonly AsyncIterable<T>[]): AsyncGenerator<T> {
  if (sources.length === 1) {
    yield* sources[0] as AsyncIterable<T>;
    return;
  }
  type Next = { k: number; r: IteratorResult<T> } | { k: number; failed: true; err: unknown };
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  // Never rejects: a source's failure is a value, so no promise is left to reject unhandled once we stop.
  const pull = (k: number): Promise<Next> =>
    (iterators[k] as AsyncIterator<T>).next().then(
      (r) => ({ k, r }),
      (err: unknown) => ({ k, failed: true as const, err }),
    );
  const pending = new Map<number, Promise<Next>>(iterators.map((_, k) => [k, pull(k)]));
  try {
    while (pending.size > 0) {
      const next = await Promise.race(pending.values());
      const { k } = next;
      if ('failed' in next) {
        pending.delete(k);
        throw next.err;
      }
      if (next.r.done) {
        pending.delete(k);
        continue;
      }
      pending.set(k, pull(k));
      yield next.r.value;
    }
  } finally {
    // A source still running is closed once its pending item came (an async generator's return waits for it).
    await Promise.allSettled([...pending.keys()].map((k) => iterators[k]?.return?.()));
  }
}
