import type Docker from 'dockerode';
import type { CodecImpl } from '../archive/codec.js';
import type { EncryptionPlan } from '../archive/encryption.js';
import type { Manifest, ManifestBlobs, ManifestDatabase, ManifestVolume } from '../archive/manifest.js';
import type { Config } from '../config/types.js';
import type { SelfInfo } from '../docker/self.js';
import type { MoodleFacts } from '../moodle/facts.js';
import type { Logger } from '../observe/logger.js';
import type { VolumeTotal } from '../observe/progress.js';
import type { Stack, VolumeTarget } from '../stack/discover.js';
import type { Hook } from '../stack/hooks.js';
import type { QuiescePlan } from '../stack/plan.js';
import type { StateStore } from '../stack/state.js';
import type { Backend } from '../storage/backend.js';
import type { BlobIndex } from '../store/blob-index.js';
import type { StoreEncoding } from '../store/encoding.js';
import type { LeafTable } from '../store/leaf-table.js';
import type { ListedBlob } from '../store/listing.js';
import type { PackWriter } from '../store/pack-writer.js';
import type { SharedInodes } from '../store/shared-inodes.js';
import type { LastList } from '../store/snapshot-list.js';
import type { PreListing } from './blob-window.js';
import type { ListingDraft } from './listing-cache.js';
import type { MoodlePlan } from './moodle-plan.js';
import type { SiteFallback } from './stop-instead.js';

export interface BackupContext {
  docker: Docker;
  config: Config;
  backend: Backend;
  log: Logger;
  kind?: Manifest['kind'];
  /** Restrict to these short volume names (restore's safety snapshot). */
  volumes?: string[];
  /** Aborts the run (SIGTERM/SIGINT): streams stop, the stack is resumed, nothing is committed. */
  signal?: AbortSignal;
  /** The job this run belongs to, recorded in the manifest (retention applies per job). */
  job?: string;
  /** Restore's safety snapshot: a site whose maintenance mode cannot be turned on is stopped instead. */
  fallback?: SiteFallback;
}

/** Milliseconds of each phase, recorded in the manifest. */
export interface BackupTimings {
  quiesceMs: number;
  readMs: number;
  downtimeMs: number;
  uploadMs: number;
  maintenanceMs: number;
}

/** One backup as it goes: what was decided before anything changed, and what each step added. */
export interface BackupRun {
  ctx: BackupContext;
  id: string;
  createdAt: Date;
  self: SelfInfo | null;
  stack: Stack;
  plan: QuiescePlan;
  mode: Config['mode'];
  mp: MoodlePlan;
  moodle: MoodleFacts | null;
  helperImage: string;
  codec: CodecImpl;
  encryption: EncryptionPlan | null;
  /** Archives go to a local spool file first (remote targets), uploaded after the stack is back. */
  spool: boolean;
  spoolDir: string;
  state: StateStore;
  hooks: { pre: Hook[]; post: Hook[] };
  /** Raw sizes of the previous snapshot's volumes, for the progress totals (terminal only). */
  previous: Record<string, number>;
  /** The dump's expected raw size, for its progress line (terminal only, online mode). */
  dumpTotal?: VolumeTotal;
  volumes: ManifestVolume[];
  database: ManifestDatabase | null;
  timings: BackupTimings;
  /** When maintenance mode went on (0: not yet). */
  maintenanceSince: number;
  /** Moodle was in maintenance mode for the run (turned on by it, or already on). */
  maintenanceUsed: boolean;
  /** The blob store's part of this run (backup/blobs.ts); undefined when no volume uses it. */
  store?: BlobSession;
  /** Earlier archives this run may reuse (backup/reuse.ts); undefined before the reads are prepared. */
  reuse?: ReuseState;
  /** Archives the compressor wrote itself, hashed and published once the reads are done (finishArchives). */
  unfinished: { entry: ManifestVolume; later: LaterArchive }[];
  /** Those archives being finished: started as the window closes, awaited after it. */
  finishing?: Promise<void>;
}

/** An archive the compressor wrote itself (backup/stream.ts `direct`), not yet hashed nor published. */
export interface LaterArchive {
  /** Hashes it (read back from the page cache) and publishes it under its key. */
  finish(): Promise<{ storedBytes: number; sha256: string }>;
  /** Removes it (the run failed). */
  discard(): Promise<void>;
}

/** An earlier archive of one volume that a run may reuse. */
export interface ReuseCandidate {
  snapshot: string;
  volume: ManifestVolume;
}

export interface ReuseState {
  /** By Docker volume name: the newest snapshot's archive of it, present with its recorded size. */
  candidates: Map<string, ReuseCandidate>;
  /** Spooled runs: archive file → the key it is copied from, once the stack is back (in place of an upload). */
  copies: Map<string, string>;
}

/** One volume whose Moodle blobs go to the store: its directory (the mount read path) and what it stored. */
export interface BlobVolume {
  v: VolumeTarget;
  dir: string;
  beforeMs: number;
  /**
   * Which blobs with several links the store may take: one walk of the volume a run at most, shared by the
   * listing, the window and the progress line's count, which run at the same time.
   */
  links: SharedInodes;
  /** What this run added to the store for this volume: blobs, their bytes, the packs' stored bytes. */
  added: { blobs: number; bytes: number; packBytes: number };
  /** The terminal's progress line of a phase that stores blobs (backup/blob-progress.ts). */
  progress?: BlobVolumeProgress;
  /** Set by storeBefore: what its listing saw, for the window to list only what changed since. */
  pre?: PreListing;
  /** Set by storeInside: this snapshot's listing, kept for the next backup once the snapshot is committed. */
  next?: {
    draft: ListingDraft;
    sinceMs: number;
    stamps: LeafTable;
    mixed: Set<string>;
    totals: { count: number; bytes: number; mismatches: ManifestBlobs['mismatches'] };
  };
  /**
   * Set once the blob list is written (writeBlobLists): spooled locally until the commit step puts it, after
   * the new shared base it names, if it needs one (store/snapshot-list.ts).
   */
  list?: {
    file: string;
    path: string;
    blobs: ManifestBlobs;
    newBase?: { path: string; linesPath?: string; textSha256: string };
    /** This list by its text (store/snapshot-list.ts LastList), kept for the next run once committed. */
    last?: LastList;
    /** `last` is new (not the previous snapshot's said again): the kept pointer changes at the commit. */
    keepLast?: boolean;
    /** The delta-lines file this run wrote in the state directory: removed if the run fails. */
    newDelta?: string;
  };
  /** Set by storeInside when the list is written after the window (writeBlobLists). */
  listLater?: () => Promise<void>;
  /** The volume's manifest entry, once its tarball is read: writeBlobLists names the list there. */
  entry?: ManifestVolume;
}

/** What backup/blobs.ts tells the progress line: each blob it stores, and the end of the phase (before its log line). */
export interface BlobVolumeProgress {
  stored(blob: ListedBlob): void;
  done(): void;
}

/** The store's part of one backup: one pack writer (so packs fill across volumes) and the volumes it serves. */
export interface BlobSession {
  writer: PackWriter;
  encoding: StoreEncoding;
  volumes: Map<string, BlobVolume>;
  /** Where packs are built before they are stored. */
  spoolDir: string;
  /** The store's index (the writer adds each pack it stores): what the store held, for the progress count. */
  index: BlobIndex;
  /** Where the last snapshot's listings are kept (state directory, per target). */
  listings: string;
}
