import type { Transform } from 'node:stream';
import type Docker from 'dockerode';

/** The database engines the sidecar dumps, loads and checks. */
export type EngineName = 'mariadb' | 'postgres';
/** The manifest's `database.kind` for each engine's dump. */
export type DumpKind = 'mariadb-dump' | 'pg-dump';

/** Counts the rows a dump stream inserts per table while passing its bytes on unchanged. */
export type RowCounter = Transform & { readonly tables: Record<string, number> };

/** What a check of every table of a loaded server found. */
export interface TableCheck {
  tool: string;
  tables: number;
  /** Tables (or objects) that failed, with the reason. */
  bad: string[];
}

/**
 * One database engine: everything engine-specific that online backup, online restore and `verify --deep`
 * do, run inside the database container through `docker exec`. Credentials are read there from the
 * container's own environment and never pass through the sidecar.
 */
export interface DatabaseEngine {
  readonly name: EngineName;
  /** For messages: MariaDB, PostgreSQL. */
  readonly label: string;
  readonly dumpKind: DumpKind;
  /** The dump tool and its options, as recorded in the manifest. */
  readonly dumpTool: string;
  readonly dumpOptions: readonly string[];
  /** Application databases (not the server's own), sorted. */
  listDatabases(docker: Docker, container: string): Promise<string[]>;
  /** The server's data directory inside its container. */
  datadir(docker: Docker, container: string): Promise<string>;
  /** The account the dump is taken as (a restore's fresh server must have it); null when not known. */
  dumpUser(docker: Docker, container: string): Promise<string | null>;
  /**
   * What the server says `databases` hold, in bytes: a rough size of their dump, for the progress line's
   * total when no earlier snapshot gives one (an estimate, shown with "~").
   */
  dataBytes(docker: Docker, container: string, databases: string[]): Promise<number>;
  /** exec argv that writes one consistent dump of `databases` to stdout. */
  dumpCommand(databases: string[]): string[];
  /** The dump's last bytes end as a complete dump does. */
  completed(tail: string): boolean;
  rowCounter(): RowCounter;
  /** exec argv that loads a dump from stdin into the server, stopping at the first error. */
  loadCommand(): string[];
  /** Rows per table key (as the row counter names them). */
  countRows(docker: Docker, container: string, tables: string[]): Promise<Record<string, number>>;
  /**
   * Seconds the server has been up; -1 while only an image's first-start initialisation server answers.
   * Throws while nothing answers.
   */
  uptime(docker: Docker, container: string): Promise<number>;
  /** Environment for a throwaway server of the snapshot's image (random password; `user` from the manifest). */
  scratchEnv(password: string, user: string | undefined): string[];
  /** Checks every table of the server. */
  checkAll(docker: Docker, container: string, timeoutMs: number): Promise<TableCheck>;
}
