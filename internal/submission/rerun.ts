// A build submitted again: what was stored for it, masked values and keys decrypted with the
// installation's key, made into a Submission for the shared path (./submission.ts). Nothing here
// shows, logs or returns a decrypted value except inside that Submission.
import type pg from "pg";
import type { Crypto } from "../crypto/crypto.js";
import { InputError } from "../errors/errors.js";
import type { BuildId } from "../queue/build-id.js";
import { BuildGoneError, loadBuild } from "../store/builds.js";
import type { Submission } from "./check.js";

/**
 * The submission build `id` was made from, or undefined when there is no such build. Variables
 * added unmasked come back as env; every masked one (a secret, or an env value that held one)
 * comes back masked, so the new build shows no more than the first did.
 */
export async function storedSubmission(pool: pg.Pool, crypto: Crypto, id: BuildId, manifestLimit: number): Promise<Submission | undefined> {
  let b;
  try {
    b = await loadBuild(pool, id, manifestLimit);
  } catch (err) {
    if (err instanceof BuildGoneError) return undefined;
    throw err;
  }
  if (b.manifestText === "" && b.manifestBytes > manifestLimit) throw new InputError(`build ${id}: its manifest has ${b.manifestBytes} bytes, more than manifest_limit (${manifestLimit})`);
  const open = (data: Buffer) => crypto.decrypt(data).toString("utf8");
  const env: [string, string][] = [];
  const secrets: [string, string][] = [];
  for (const v of b.variables) {
    if (v.masked && v.valueEncrypted) secrets.push([v.key, open(v.valueEncrypted)]);
    else env.push([v.key, v.value ?? ""]);
  }
  return {
    manifestSource: `build ${id}`,
    manifest: b.manifestEncrypted ? open(b.manifestEncrypted) : b.manifestText,
    env,
    secrets,
    keys: b.keys.map((k) => [k.name, open(k.encrypted)]),
    notify: b.notify,
  };
}
