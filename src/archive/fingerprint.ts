import { createHash } from 'node:crypto';
import type { ExcludeRule } from '../config/exclude-rules.js';

/** How an archive is made from a tree: what two archives of the same tree must share to be interchangeable. */
export interface ArchiveRecipe {
  excluded: readonly ExcludeRule[];
  codec: string;
  /** undefined: the codec's default. */
  level: number | undefined;
  /** age recipients; null: not encrypted. */
  recipients: readonly string[] | null;
}

/** Bumped when the listing or the recipe changes meaning: older fingerprints then never match. */
const VERSION = 'moodle-backup-sidecar/archive-fingerprint/1';

/**
 * A volume's fingerprint (the manifest's `fingerprint`): sha256 over the tree's metadata listing
 * (volume/tree-listing.ts) and the recipe. Equal fingerprints mean the same entries with the same
 * metadata, read into an archive the same way, so the earlier archive stands for the later one.
 * Recipients are compared as a set; excludes in order (their order is how they were given).
 */
export function archiveFingerprint(listingDigest: string, recipe: ArchiveRecipe): string {
  const canonical = JSON.stringify({
    version: VERSION,
    listing: listingDigest,
    excluded: recipe.excluded,
    codec: recipe.codec,
    level: recipe.level ?? null,
    recipients: recipe.recipients ? [...recipe.recipients].sort() : null,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
