// The secrets of the web's access control, as they are made, stored and checked: passwords as
// scrypt hashes, API tokens and session tokens as SHA-256 digests. Pure: nothing here touches a
// service, and nothing returns or logs a secret it was given.
import { createHash, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from "node:crypto";

/** scrypt's cost: 2^15 × 8 × 128 bytes = 32 MiB and tens of milliseconds per try (RFC 7914's interactive figure, doubled). */
const SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

/** scrypt computations at once: each holds 32 MiB, and a burst of sign-ins must not take the machine's memory. */
const SCRYPT_AT_ONCE = 2;
let computing = 0;
const queued: (() => void)[] = [];

async function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  while (computing >= SCRYPT_AT_ONCE) await new Promise<void>((resolve) => queued.push(resolve));
  computing++;
  try {
    return await new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
  } finally {
    computing--;
    queued.shift()?.();
  }
}

/** The memory scrypt may take for `N`, `r`: its need with room to spare (Node's default cap is 32 MiB). */
const maxmem = (N: number, r: number) => 256 * N * r;

/** `scrypt$N$r$p$salt$hash` (base64): what web_users.password_hash holds. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const { N, r, p } = SCRYPT;
  const hash = await scrypt(password, salt, HASH_BYTES, { N, r, p, maxmem: maxmem(N, r) });
  return ["scrypt", N, r, p, salt.toString("base64"), hash.toString("base64")].join("$");
}

/** A stored hash no password matches, checked for unknown names so that they take as long as known ones. */
export const UNMATCHABLE_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(SALT_BYTES).toString("base64")}$${Buffer.alloc(HASH_BYTES).toString("base64")}`;

/** Whether `password` is the one `stored` was made from; compared in constant time. A malformed hash matches nothing. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  if (![N, r, p].every((n) => Number.isSafeInteger(n) && n > 0)) return false;
  const salt = Buffer.from(parts[4], "base64");
  const want = Buffer.from(parts[5], "base64");
  if (want.length === 0) return false;
  const got = await scrypt(password, salt, want.length, { N, r, p, maxmem: maxmem(N, r) });
  return timingSafeEqual(got, want) && stored !== UNMATCHABLE_HASH;
}

/** SHA-256 in hex: how API tokens and session tokens are stored (they are long and random: no salt is needed). */
export function tokenDigest(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Whether two hex digests are equal, in constant time. */
export function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

/** What an API token looks like: `djw_<prefix>_<secret>`; the prefix is its public id. */
const TOKEN = /^djw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** A new API token and its prefix (its id in `token list` and `token rm`). */
export function newApiToken(): { token: string; prefix: string } {
  const prefix = randomBytes(6).toString("hex");
  return { token: `djw_${prefix}_${randomBytes(32).toString("base64url")}`, prefix };
}

/** The prefix of a well-formed API token, or undefined. */
export function apiTokenPrefix(token: string): string | undefined {
  return TOKEN.exec(token)?.[1];
}

/** Whether `text` looks like a token prefix (12 hex digits), as `token rm` takes it. */
export function isTokenPrefix(text: string): boolean {
  return /^[0-9a-f]{12}$/.test(text);
}

/** A random token for a session cookie or a sign-in form. */
export function newSessionToken(): string {
  return randomBytes(32).toString("base64url");
}

/** The CSRF token of a session: derived from its cookie, so it is bound to it, and telling it tells nothing of the cookie. */
export function csrfToken(sessionToken: string): string {
  return createHmac("sha256", sessionToken).update("djinn-worker web form").digest("base64url");
}

/** Whether a form's CSRF token is the one `expected`; constant time. */
export function sameToken(given: unknown, expected: string): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(given, "utf8");
  const b = Buffer.from(expected, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A user name: what `user add` accepts, and the sign-in form. */
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** The fewest characters a password may have. */
export const MIN_PASSWORD_LENGTH = 10;
