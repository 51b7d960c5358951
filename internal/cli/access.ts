// `djinn-worker user ...` and `token ...`: the web's users and API tokens, kept in PostgreSQL as
// hashes (../access). A password comes from standard input or a file, never the command line; a
// token is printed once, when it is made.
import { readFile } from "node:fs/promises";
import { loadWorkerConfig } from "../config/config.js";
import { addToken, checkUserName, listTokens, listUsers, putUser, removeToken, removeUser } from "../access/store.js";
import { InputError, fileReadReason } from "../errors/errors.js";
import { withPool, type Out } from "./services.js";

/** Longer than any password anyone types: more is a mistake (the wrong file), refused unread. */
const PASSWORD_LIMIT = 4096;

/** A password: the file's or standard input's text, one trailing newline dropped (as worker.toml's `_file` keys). */
async function readPassword(file: string | undefined, stdin: NodeJS.ReadableStream & { isTTY?: boolean }): Promise<string> {
  let text: string;
  if (file !== undefined) {
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      throw new InputError(`--password-file ${file}: cannot read: ${fileReadReason(err)}`);
    }
  } else {
    if (stdin.isTTY) throw new InputError("user add reads the password from standard input (a pipe) or --password-file FILE, never from the command line or a terminal that shows it");
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stdin) {
      chunks.push(Buffer.from(chunk as Buffer));
      total += (chunk as Buffer).length;
      if (total > PASSWORD_LIMIT) break;
    }
    text = Buffer.concat(chunks).toString("utf8");
  }
  if (Buffer.byteLength(text) > PASSWORD_LIMIT) throw new InputError(`the password is longer than ${PASSWORD_LIMIT} bytes: is that the right ${file === undefined ? "input" : "file"}?`);
  return text.replace(/\r?\n$/, "");
}

export async function userCommand(configFile: string, action: string, name: string | undefined, passwordFile: string | undefined, out: Out, stdin = process.stdin): Promise<void> {
  const cfg = loadWorkerConfig(configFile);
  if (action === "list") {
    return withPool(cfg, async (pool) => {
      for (const u of await listUsers(pool)) out.write(`${u.name}\t${u.tokens} token${u.tokens === 1 ? "" : "s"}\tadded ${u.createdAt.toISOString()}\n`);
    });
  }
  if (name === undefined) throw new InputError(`user ${action} needs NAME: djinn-worker user ${action} NAME`);
  checkUserName(name);
  if (action === "add") {
    const password = await readPassword(passwordFile, stdin);
    return withPool(cfg, async (pool) => {
      out.write((await putUser(pool, name, password)) ? `user ${name} added\n` : `user ${name}: password changed, its sessions ended\n`);
    });
  }
  return withPool(cfg, async (pool) => {
    if (!(await removeUser(pool, name))) throw new InputError(`no user ${JSON.stringify(name)}`);
    out.write(`user ${name} removed, with its tokens and sessions\n`);
  });
}

export async function tokenCommand(configFile: string, action: string, arg: string | undefined, out: Out): Promise<void> {
  const cfg = loadWorkerConfig(configFile);
  if (action === "list") {
    return withPool(cfg, async (pool) => {
      for (const t of await listTokens(pool)) out.write(`${t.prefix}\t${t.user}\tadded ${t.createdAt.toISOString()}\tlast used ${t.lastUsedAt?.toISOString() ?? "never"}\n`);
    });
  }
  if (arg === undefined) throw new InputError(action === "add" ? "token add needs USER: djinn-worker token add USER" : "token rm needs ID: djinn-worker token rm ID (token list shows them)");
  if (action === "add") {
    checkUserName(arg);
    return withPool(cfg, async (pool) => {
      const { token } = await addToken(pool, arg);
      // The only time it is shown: the database holds its digest.
      out.write(`${token}\n`);
    });
  }
  return withPool(cfg, async (pool) => {
    if (!(await removeToken(pool, arg))) throw new InputError(`no token ${arg}`);
    out.write(`token ${arg} removed\n`);
  });
}
