import type { StateStore, VolumeProgress } from '../stack/state.js';
import type { SwapRecord } from '../volume/swap.js';

/**
 * Each restored volume's progress, written to the state file as it happens, so that a failure midway is
 * reported per volume and a crash midway can be settled by the next start (recover/run.ts).
 */
export class RestoreProgress {
  readonly volumes: Record<string, VolumeProgress>;
  readonly swaps: Record<string, SwapRecord> = {};

  constructor(
    private readonly state: StateStore,
    names: string[],
  ) {
    this.volumes = Object.fromEntries(names.map((n) => [n, 'pending' as const]));
  }

  async mark(name: string, st: VolumeProgress): Promise<void> {
    this.volumes[name] = st;
    await this.save();
  }

  /** A staged swap's step; undefined once nothing is left to settle (a failed extract's copy is gone). */
  async swap(name: string, rec: SwapRecord | undefined): Promise<void> {
    if (rec) this.swaps[name] = rec;
    else {
      delete this.swaps[name];
      if (this.volumes[name] === 'staging') this.volumes[name] = 'pending';
    }
    await this.save();
  }

  /** The volume holds the snapshot's data; its swap record stays while its old content awaits deletion. */
  async restored(name: string, oldContentLeft: boolean): Promise<void> {
    this.volumes[name] = 'restored';
    if (!oldContentLeft) delete this.swaps[name];
    await this.save();
  }

  /** For the failure message: what each volume holds. */
  describe(): string {
    return Object.entries(this.volumes)
      .map(([k, s]) => {
        if (s === 'pending') return `${k}: untouched`;
        if (s === 'emptied') return `${k}: EMPTIED/PARTIAL`;
        if (s === 'staging') return `${k}: INTERRUPTED (the sidecar's next start puts it back as it was)`;
        return `${k}: restored`;
      })
      .join(', ');
  }

  private async save(): Promise<void> {
    await this.state.update((s) => {
      s.volumes = { ...this.volumes };
      s.swaps = { ...this.swaps };
    });
  }
}
