// What a submission must be before anything is stored: the same rules, and the same one-line
// errors, whether it came as command-line flags or as a JSON body. Pure: no service is touched.
import { InputError } from "../errors/errors.js";
import { decodeManifest, manifestTooLarge, parseManifest, type Manifest } from "../manifest/manifest.js";
import { maskedValueProblem, maskText, secretInNames } from "../runner/mask.js";
import { planBuild } from "../runner/plan.js";
import { isShellName } from "../shell/quote.js";

export interface Submission {
  /** Where the manifest came from, for its errors: a file name, `manifest` for an API body. */
  manifestSource: string;
  /** The manifest as given: bytes are checked as UTF-8. */
  manifest: Buffer | string;
  env: [string, string][];
  /** Masked variables. */
  secrets: [string, string][];
  /** NAME, private key: placed at ~/.ssh/NAME in the build, stored encrypted. */
  keys: [string, string][];
  notify: string[];
}

export interface CheckedSubmission {
  text: string;
  manifest: Manifest;
  warnings: string[];
  env: [string, string][];
  secrets: [string, string][];
  keys: [string, string][];
  notify: string[];
}

/** How each part of a submission is named in its errors: as the CLI's flags, or as the API's fields. */
export interface FieldNames {
  env: string;
  secret: string;
  key: string;
  notify: string;
}

export const SUBMIT_FIELDS: FieldNames = { env: "--env", secret: "--secret", key: "--key", notify: "--notify" };
export const API_FIELDS: FieldNames = { env: "env", secret: "secrets", key: "keys", notify: "notify" };

const EMAIL = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

/** Whether `a` is taken as an address to notify. */
export function isEmailAddress(a: string): boolean {
  return EMAIL.test(a);
}
/** A key becomes a file in ~/.ssh: a plain file name. */
const KEY_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * The submission checked, or an InputError naming the field or file of the first problem. The
 * secrets are checked first, and every later error has their values replaced: a manifest or an
 * --env error may quote one.
 */
export function checkSubmission(s: Submission, limit: number, names: FieldNames = SUBMIT_FIELDS): CheckedSubmission {
  const secrets = checkSecrets(s.secrets, names);
  const masks = secrets.map(([, value]) => value);
  const { text, manifest, warnings } = checkManifest(s.manifestSource, s.manifest, limit, masks);
  for (const [key] of s.env) {
    if (!isShellName(key)) throw new InputError(`${names.env} ${JSON.stringify(maskText(key, masks))}: expected KEY=value with KEY a shell variable name`);
  }
  for (const [name] of s.keys) {
    if (!KEY_NAME.test(name)) throw new InputError(`${names.key} ${JSON.stringify(maskText(name, masks))}: expected NAME a file name for ~/.ssh`);
  }
  for (const a of s.notify) if (!isEmailAddress(a)) throw new InputError(`${names.notify} ${JSON.stringify(maskText(a, masks))}: not an email address`);
  return { text, manifest, warnings, env: s.env, secrets, keys: s.keys, notify: s.notify };
}

/** Each masked variable: a shell name and a value long enough to be masked usefully. An error never shows a value. */
function checkSecrets(secrets: [string, string][], names: FieldNames): [string, string][] {
  for (const [key, value] of secrets) {
    if (!isShellName(key)) throw new InputError(`${names.secret}: a masked variable's name must be a shell variable name (letters, digits and _, not starting with a digit); the name is not shown: it may be a value`);
    const problem = maskedValueProblem(key, value);
    if (problem) throw new InputError(`${names.secret} ${key}: ${problem}`);
  }
  return secrets;
}

/**
 * The manifest parsed; an error names `source`, with `masks` replaced. One whose stage, job or
 * artifact names hold a secret is refused (secretInNames).
 */
export function checkManifest(source: string, given: Buffer | string, limit: number, masks: string[]): { text: string; manifest: Manifest; warnings: string[] } {
  const bytes = typeof given === "string" ? Buffer.byteLength(given) : given.length;
  if (bytes > limit) throw new InputError(`${source}: ${manifestTooLarge(limit, bytes)}`);
  let text: string;
  let parsed: ReturnType<typeof parseManifest>;
  try {
    text = typeof given === "string" ? given : decodeManifest(given);
    parsed = parseManifest(text);
  } catch (err) {
    throw new InputError(`${source}: ${maskText((err as Error).message, masks)}`);
  }
  const named = secretInNames(planBuild(parsed.manifest, "local"), masks);
  if (named) throw new InputError(`${source}: ${named}`);
  return { text, manifest: parsed.manifest, warnings: parsed.warnings.map((w) => maskText(w, masks)) };
}
