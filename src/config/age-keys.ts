import { Decrypter, Encrypter } from 'age-encryption';

/** Format checks of age keys given in the settings (the config refuses bad ones before anything runs). */

/** Why a recipient string is unusable, or undefined when age-encryption accepts it. Never echoes it. */
export function recipientProblem(r: string): string | undefined {
  if (!/^age1[0-9a-z]+$/.test(r)) return 'expected an age recipient (age1…)';
  try {
    new Encrypter().addRecipient(r);
    return undefined;
  } catch {
    return 'not a valid age recipient (bad checksum or length)';
  }
}

/** Why an identity string is unusable, or undefined. Never echoes it (it is a secret key). */
export function identityProblem(id: string): string | undefined {
  if (!/^AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]+$/.test(id)) return 'expected an age identity (AGE-SECRET-KEY-1…)';
  try {
    new Decrypter().addIdentity(id);
    return undefined;
  } catch {
    // The library's message quotes the key: never pass it on.
    return 'not a valid age identity (bad checksum or length)';
  }
}

/** Comma-, space- or line-separated keys; `#` starts a comment line (age's key files carry them). */
export function splitKeys(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .flatMap((l) => l.split(/[\s,]+/))
    .filter(Boolean);
}
