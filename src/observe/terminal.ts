/**
 * A terminal's bottom line, shared by the progress display and the human log lines: a log line written
 * while a progress line is showing clears it first and redraws it below, so the two never run into each other.
 */
export interface TerminalOut {
  write(text: string): unknown;
  columns?: number;
}

export class StatusLine {
  private line = '';

  constructor(private readonly out: TerminalOut) {}

  /** Replaces the status line in place (cut to the terminal's width so it never wraps). */
  show(text: string): void {
    const next = fitWidth(text, this.out.columns);
    // Spaces, not an erase-line sequence: with NO_COLOR the output carries no escape code at all.
    this.out.write(`\r${next}${' '.repeat(Math.max(this.line.length - next.length, 0))}`);
    this.line = next;
  }

  /** Leaves the status line on screen as a finished line; the next show() starts a new one. */
  keep(text?: string): void {
    if (text !== undefined) this.show(text);
    if (this.line) this.out.write('\n');
    this.line = '';
  }

  /** A complete line (ending in \n) above the status line. */
  print(text: string): void {
    if (!this.line) {
      this.out.write(text);
      return;
    }
    this.out.write(`\r${' '.repeat(this.line.length)}\r${text}${this.line}`);
  }
}

function fitWidth(text: string, columns: number | undefined): string {
  if (!columns || text.length < columns) return text;
  return `${text.slice(0, Math.max(columns - 2, 0))}…`;
}

let stderrLine: StatusLine | undefined;

/** The process's one status line on stderr (made on first use: no side effect at import). */
export function stderrStatus(): StatusLine {
  stderrLine ??= new StatusLine(process.stderr);
  return stderrLine;
}

/** Whether stderr is a terminal a person reads. */
export function stderrIsTerminal(): boolean {
  return Boolean(process.stderr.isTTY);
}

let human: boolean | undefined;

/**
 * Decides once per process (when the CLI makes its logger) whether stderr gets human output, log lines and
 * progress alike: `auto` means when it is a terminal; `--json` and BACKUP_LOG_FORMAT=json say no.
 */
export function chooseHumanOutput(format: 'auto' | 'json' | 'human' = 'auto'): boolean {
  human = format === 'human' || (format === 'auto' && stderrIsTerminal());
  return human;
}

/** The decision above; before it is made (library use, tests), whether stderr is a terminal. */
export function humanOutput(): boolean {
  return human ?? stderrIsTerminal();
}

/** NO_COLOR (https://no-color.org): set and not empty turns colour off. */
export function colourWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.NO_COLOR ?? '') === '';
}
