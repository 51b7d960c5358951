// Users, API tokens and sign-in sessions of the web process, in PostgreSQL (schema version 6).
// Only hashes are written: a password as scrypt, a token or a session as SHA-256.
import type pg from "pg";
import { InputError } from "../errors/errors.js";
import { apiTokenPrefix, hashPassword, isTokenPrefix, MIN_PASSWORD_LENGTH, newApiToken, newSessionToken, sameDigest, tokenDigest, USER_NAME, UNMATCHABLE_HASH, verifyPassword } from "./secrets.js";

export interface User {
  id: number;
  name: string;
}

/** Refuses a user name `user add` would not store; one line, naming the rule. */
export function checkUserName(name: string): void {
  if (!USER_NAME.test(name)) throw new InputError(`user name ${JSON.stringify(name)}: 1 to 64 letters, digits and . _ @ -, starting with a letter or digit`);
}

/** Refuses a password too short to be worth hashing; the password itself is never in the line. */
export function checkPassword(password: string): void {
  if ([...password].length < MIN_PASSWORD_LENGTH) throw new InputError(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  if (/[\r\n]/.test(password)) throw new InputError("the password must be one line");
}

/** Adds user `name`, or sets the password of the one that exists; true when it is new. */
export async function putUser(pool: pg.Pool, name: string, password: string): Promise<boolean> {
  checkUserName(name);
  checkPassword(password);
  const hash = await hashPassword(password);
  const r = await pool.query(
    `INSERT INTO web_users (name, password_hash) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash RETURNING (xmax = 0) AS inserted`,
    [name, hash],
  );
  // A new password ends the sessions the old one opened.
  if (!r.rows[0].inserted) await pool.query(`DELETE FROM web_sessions WHERE user_id = (SELECT id FROM web_users WHERE name = $1)`, [name]);
  return r.rows[0].inserted;
}

/** Removes user `name` with its tokens and sessions; false when there is none. */
export async function removeUser(pool: pg.Pool, name: string): Promise<boolean> {
  const r = await pool.query(`DELETE FROM web_users WHERE name = $1`, [name]);
  return r.rowCount === 1;
}

export async function listUsers(pool: pg.Pool): Promise<{ name: string; createdAt: Date; tokens: number }[]> {
  const r = await pool.query(`SELECT u.name, u.created_at, (SELECT count(*) FROM web_tokens t WHERE t.user_id = u.id)::int AS tokens FROM web_users u ORDER BY u.name`);
  return r.rows.map((u) => ({ name: u.name, createdAt: u.created_at, tokens: u.tokens }));
}

/** The user whose name and password these are; undefined otherwise, after as long as a known name takes. */
export async function checkSignIn(pool: pg.Pool, name: string, password: string): Promise<User | undefined> {
  const r = USER_NAME.test(name) ? await pool.query(`SELECT id, name, password_hash FROM web_users WHERE name = $1`, [name]) : { rows: [] };
  const row = r.rows[0];
  const ok = await verifyPassword(password, row?.password_hash ?? UNMATCHABLE_HASH);
  return ok && row ? { id: Number(row.id), name: row.name } : undefined;
}

/** Whether a user of that name exists (for the log of a failed sign-in, which names only real users). */
export async function userExists(pool: pg.Pool, name: string): Promise<boolean> {
  if (!USER_NAME.test(name)) return false;
  return ((await pool.query(`SELECT 1 FROM web_users WHERE name = $1`, [name])).rowCount ?? 0) > 0;
}

/** A new API token of user `name`: the token (shown once, stored as its digest) and its prefix. */
export async function addToken(pool: pg.Pool, name: string): Promise<{ token: string; prefix: string }> {
  const { token, prefix } = newApiToken();
  const r = await pool.query(`INSERT INTO web_tokens (user_id, prefix, token_sha256) SELECT id, $2, $3 FROM web_users WHERE name = $1`, [name, prefix, tokenDigest(token)]);
  if (r.rowCount !== 1) throw new InputError(`no user ${JSON.stringify(name)} (djinn-worker user add ${name} first)`);
  return { token, prefix };
}

/** Removes the token with this prefix; false when there is none. */
export async function removeToken(pool: pg.Pool, prefix: string): Promise<boolean> {
  if (!isTokenPrefix(prefix)) throw new InputError(`${JSON.stringify(prefix)} is not a token id: the 12 hex digits after djw_ (djinn-worker token list shows them)`);
  const r = await pool.query(`DELETE FROM web_tokens WHERE prefix = $1`, [prefix]);
  return r.rowCount === 1;
}

export async function listTokens(pool: pg.Pool): Promise<{ prefix: string; user: string; createdAt: Date; lastUsedAt: Date | null }[]> {
  const r = await pool.query(`SELECT t.prefix, u.name, t.created_at, t.last_used_at FROM web_tokens t JOIN web_users u ON u.id = t.user_id ORDER BY u.name, t.id`);
  return r.rows.map((t) => ({ prefix: t.prefix, user: t.name, createdAt: t.created_at, lastUsedAt: t.last_used_at }));
}

/** The user an API token belongs to; undefined for a malformed, unknown or removed token. */
export async function tokenUser(pool: pg.Pool, token: string): Promise<User | undefined> {
  const prefix = apiTokenPrefix(token);
  if (!prefix) return undefined;
  const r = await pool.query(`SELECT t.id, t.token_sha256, u.id AS user_id, u.name FROM web_tokens t JOIN web_users u ON u.id = t.user_id WHERE t.prefix = $1`, [prefix]);
  const row = r.rows[0];
  if (!row || !sameDigest(tokenDigest(token), row.token_sha256)) return undefined;
  await pool.query(`UPDATE web_tokens SET last_used_at = now() WHERE id = $1`, [row.id]);
  return { id: Number(row.user_id), name: row.name };
}

/** Opens a session of `user` for `lifetimeMs`; the cookie's value (stored as its digest only). */
export async function openSession(pool: pg.Pool, user: User, lifetimeMs: number): Promise<string> {
  const token = newSessionToken();
  // Expired sessions go as new ones come: the table holds only live ones and a few stale.
  await pool.query(`DELETE FROM web_sessions WHERE expires_at < now()`);
  await pool.query(`INSERT INTO web_sessions (token_sha256, user_id, expires_at) VALUES ($1, $2, now() + $3::interval)`, [tokenDigest(token), user.id, `${Math.round(lifetimeMs)} milliseconds`]);
  return token;
}

/** The user of a live session; undefined for an unknown or expired one. */
export async function sessionUser(pool: pg.Pool, token: string): Promise<User | undefined> {
  const r = await pool.query(`SELECT u.id, u.name FROM web_sessions s JOIN web_users u ON u.id = s.user_id WHERE s.token_sha256 = $1 AND s.expires_at > now()`, [tokenDigest(token)]);
  return r.rows[0] ? { id: Number(r.rows[0].id), name: r.rows[0].name } : undefined;
}

export async function closeSession(pool: pg.Pool, token: string): Promise<void> {
  await pool.query(`DELETE FROM web_sessions WHERE token_sha256 = $1`, [tokenDigest(token)]);
}
