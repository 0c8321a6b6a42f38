const NL = 10;

/**
 * Cuts a stream of byte chunks into lines for a synchronous `onLine(buf, start, end)`, where `buf[end]` is
 * the newline; the range is valid only during the call. Lines are read in place in their chunk; only a line
 * that a chunk cuts is copied (joined with its rest). `pending()` is whether a cut line is still waiting,
 * for the caller to treat a stream that ends inside a line.
 */
export function lineSplitter(onLine: (buf: Buffer, start: number, end: number) => void): {
  push(chunk: Buffer): void;
  pending(): boolean;
} {
  let carry: Buffer | undefined;
  return {
    push(chunk) {
      let start = 0;
      let nl = chunk.indexOf(NL);
      if (carry && nl >= 0) {
        const line = Buffer.concat([carry, chunk.subarray(0, nl + 1)]);
        carry = undefined;
        onLine(line, 0, line.length - 1);
        start = nl + 1;
        nl = chunk.indexOf(NL, start);
      }
      for (; nl >= 0; nl = chunk.indexOf(NL, start)) {
        onLine(chunk, start, nl);
        start = nl + 1;
      }
      if (start < chunk.length)
        carry = carry ? Buffer.concat([carry, chunk.subarray(start)]) : Buffer.from(chunk.subarray(start));
    },
    pending: () => carry !== undefined,
  };
}
