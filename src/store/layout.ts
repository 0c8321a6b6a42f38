/**
 * Where the store keeps things under a backend's root, and what a blob's name looks like. One place, so the
 * writer, the reader, the index loader and docs/format.md cannot disagree.
 */

/** Every key of the store starts with this (beside the snapshots' own keys). */
export const STORE_PREFIX = 'store/';
export const PACKS_PREFIX = `${STORE_PREFIX}packs/`;
export const INDEX_PREFIX = `${STORE_PREFIX}index/`;
/** Shared blob lists (bases): a snapshot's list names one and says what differs (docs/format.md). */
export const LISTS_PREFIX = `${STORE_PREFIX}lists/`;

const HEX40 = /^[0-9a-f]{40}$/;
const HEX64 = /^[0-9a-f]{64}$/;

/** A pack's key: its id (sha256 of its stored bytes, hex) under a two-hex-digit fan-out directory. */
export function packKey(packId: string): string {
  return `${PACKS_PREFIX}${packId.slice(0, 2)}/${packId}`;
}

/** An index file's key: the sha256 of its stored bytes, so rewriting one never replaces another. */
export function indexKey(indexId: string): string {
  return `${INDEX_PREFIX}${indexId}`;
}

/** A shared blob list's key: the sha256 of its stored bytes, fanned out like packs. */
export function listKey(listId: string): string {
  return `${LISTS_PREFIX}${listId.slice(0, 2)}/${listId}`;
}

/** The id in a pack, index or list key, or null when the key is not one the store wrote. */
export function idOfKey(key: string): string | null {
  const id = key.slice(key.lastIndexOf('/') + 1);
  if (!HEX64.test(id)) return null;
  if (key === packKey(id) || key === indexKey(id) || key === listKey(id)) return id;
  return null;
}

export function isSha1Hex(name: string): boolean {
  return HEX40.test(name);
}

/** Where Moodle keeps a blob, relative to the dataroot: `filedir/ab/cd/abcd…`. Pack entries use it too. */
export function blobPath(sha1: string, area: BlobArea = 'filedir'): string {
  return `${area}/${sha1.slice(0, 2)}/${sha1.slice(2, 4)}/${sha1}`;
}

/** The two content-addressed directories of a Moodle dataroot. */
export type BlobArea = 'filedir' | 'trashdir';
export const BLOB_AREAS: readonly BlobArea[] = ['filedir', 'trashdir'];

const BLOB_PATH = new RegExp(`^(${BLOB_AREAS.join('|')})/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{40}$`);

/**
 * Whether a path is a blob's own kind of place (`filedir/ab/cd/<sha1>`, trashdir likewise): what the store
 * takes from a dataroot, and a name tar can be told in a sed expression (nothing in it is syntax).
 */
export function isBlobPath(path: string): boolean {
  return BLOB_PATH.test(path);
}
