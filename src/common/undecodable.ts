/**
 * A name read from bytes that are not UTF-8 (a directory an old Latin-1 system made, say): as a string it
 * holds U+FFFD and no longer names the entry, so a path built from it is not found.
 */
export function isUndecodable(name: string): boolean {
  return name.includes('\uFFFD');
}
