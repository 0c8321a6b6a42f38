/** Format checks of age keys given in the settings (the config refuses bad ones before anything runs). */

type Age = typeof import('age-encryption');
let age: Age | undefined;

/**
 * Loads age-encryption when the settings hold something that may be an age key. It is 57 ES modules (~70 ms
 * of CPU at every start on the 2-core test machine) that an unencrypted setup never uses; the checks below
 * are synchronous (a zod refinement), so the settings' loader calls this with the raw input first.
 */
export async function loadAgeForKeys(input: unknown): Promise<void> {
  if (age || !/age1|AGE-SECRET-KEY-/.test(JSON.stringify(input) ?? '')) return;
  age = await import('age-encryption');
}

function lib(): Age {
  // Only a string matching a key's pattern gets here, and such a string makes loadAgeForKeys load it.
  if (!age) throw new Error('age keys are checked only after loadAgeForKeys(the raw settings)');
  return age;
}

/** Why a recipient string is unusable, or undefined when age-encryption accepts it. Never echoes it. */
export function recipientProblem(r: string): string | undefined {
  if (!/^age1[0-9a-z]+$/.test(r)) return 'expected an age recipient (age1…)';
  try {
    new (lib().Encrypter)().addRecipient(r);
    return undefined;
  } catch {
    return 'not a valid age recipient (bad checksum or length)';
  }
}

/** Why an identity string is unusable, or undefined. Never echoes it (it is a secret key). */
export function identityProblem(id: string): string | undefined {
  if (!/^AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]+$/.test(id)) return 'expected an age identity (AGE-SECRET-KEY-1…)';
  try {
    new (lib().Decrypter)().addIdentity(id);
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
