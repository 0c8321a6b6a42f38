import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { currentOwner, legacyOwner, type Owner } from '../common/owner.js';
import type { QuiesceMode } from '../config/types.js';
import type { MultipartRecord, UploadLedger } from '../storage/backend.js';
import type { SwapRecord } from '../volume/swap.js';

export interface QuiescedContainer {
  /** The container's id; for `scale`, the swarm service's id. */
  id: string;
  name: string;
  /** `scale`: a swarm service scaled to 0, to be scaled back to `replicas` (stack/scale.ts). */
  action: QuiesceMode | 'scale';
  /** The replica count before the run scaled the service to 0. */
  replicas?: number;
  /** It was crash-looping (restart policy) when stopped: back in that state counts as resumed. */
  wasRestarting?: boolean;
}

/** Enough to turn maintenance mode off again from another process (crash recovery). */
export interface MaintenanceRecord {
  /** Container id and name of the Moodle container. */
  container: string;
  name: string;
  /** Path of admin/cli/maintenance.php inside that container. */
  script: string;
  /** The dataroot's path inside that container, '' when unknown. */
  dataroot: string;
  /** Who runs the CLI (the web server's user); absent = the container's default user. */
  user?: string;
  /** Compose project and service, to find the container's successor if it was recreated meanwhile. */
  project?: string;
  service?: string;
  /** A swarm task's full service name: its successor is a running task of that service. */
  swarmService?: string;
}

/** `staging`: being unpacked beside the old data, which is still in place (the mount write path). */
export type VolumeProgress = 'pending' | 'emptied' | 'staging' | 'restored';

export interface RunState {
  runId: string;
  operation: 'backup' | 'restore';
  startedAt: string;
  /** The run's PID; kept beside `owner` for older versions reading a newer file. */
  pid: number;
  /** Who runs it (common/owner.ts); absent in files written before it existed: then `pid` alone is judged. */
  owner?: Owner;
  /** Containers quiesced so far, in stop order; written before each stop so a crash cannot lose one. */
  quiesced: QuiescedContainer[];
  /** Set before this run turns Moodle's maintenance mode on, removed once it is off again (moodle/maintenance.ts). */
  maintenance?: MaintenanceRecord;
  /** Restore only: per volume, how far it got (for the roll-back message after a crash). */
  volumes?: Record<string, VolumeProgress>;
  /** Restore on the mount path: per volume, how far its staged swap got (recovery settles it, volume/swap.ts). */
  swaps?: Record<string, SwapRecord>;
  /** Restore only: the safety snapshot to roll back to. */
  safetySnapshot?: string;
  /** Multipart uploads started and not yet completed or aborted: recovery aborts them (recover/discard-interrupted.ts). */
  uploads?: MultipartRecord[];
}

/** `pid` and `owner` of a run of this process, for a new state file. */
export function ownedByMe(): { pid: number; owner: Owner } {
  return { pid: process.pid, owner: currentOwner() };
}

/** The process that wrote a state file; an old file (no `owner`) by its PID on this host, the old rule. */
export function stateOwner(state: RunState): Owner {
  return state.owner ?? legacyOwner(state.pid);
}

/**
 * The state file on a persistent path: what the current run has stopped. A sidecar restarted after a
 * crash reads it first thing and resumes those containers. Written atomically (temp file + rename).
 */
export class StateStore implements UploadLedger {
  readonly file: string;
  /** Read-modify-write cycles of this process, one at a time (an upload may end while another starts). */
  private queue: Promise<unknown> = Promise.resolve();
  constructor(readonly dir: string) {
    this.file = join(dir, 'state.json');
  }

  async read(): Promise<RunState | null> {
    try {
      return JSON.parse(await readFile(this.file, 'utf8')) as RunState;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      // A torn or foreign file must not block recovery forever: treat as absent, keep a copy.
      await rename(this.file, `${this.file}.corrupt`).catch(() => undefined);
      return null;
    }
  }

  async write(state: RunState): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}`;
    await writeFile(tmp, JSON.stringify(state, null, 2), { mode: 0o600 });
    await rename(tmp, this.file);
  }

  update(fn: (s: RunState) => void): Promise<void> {
    const next = this.queue.then(async () => {
      const s = await this.read();
      if (!s) return;
      fn(s);
      await this.write(s);
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  uploadStarted(u: MultipartRecord): Promise<void> {
    return this.update((s) => {
      s.uploads = [...(s.uploads ?? []), u];
    });
  }

  uploadEnded(uploadId: string): Promise<void> {
    return this.update((s) => {
      const left = (s.uploads ?? []).filter((u) => u.uploadId !== uploadId);
      if (left.length > 0) s.uploads = left;
      else delete s.uploads;
    });
  }

  async clear(): Promise<void> {
    await rm(this.file, { force: true });
  }
}
