import { createInterface } from 'node:readline/promises';

export function isInteractive(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY);
}

/** Asks one question on the terminal; bounded to `timeoutMs` so a forgotten prompt cannot hold the lock forever. */
export async function ask(question: string, timeoutMs = 10 * 60_000): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return (await rl.question(question, { signal: AbortSignal.timeout(timeoutMs) })).trim();
  } catch {
    return '';
  } finally {
    rl.close();
  }
}
