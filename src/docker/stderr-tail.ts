/** The first 4 KiB a child process wrote to a stream (its stderr), for error messages. */
export function collect(stream: NodeJS.ReadableStream): () => string {
  let text = '';
  stream.on('data', (d: Buffer) => {
    if (text.length < 4096) text += d.toString();
  });
  return () => text.slice(0, 4096);
}
