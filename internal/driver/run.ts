// One run of a build, as drivers name what they leave on the host. Build ids are unique only inside
// one database, so two installations on a host share them; a run token is random, recorded with
// the claim (builds.runs), and carried by everything a driver creates, so reaping a dead run finds
// what that run left and nothing else.
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { ensurePrivateDir } from "../fs/private.js";

/** A build and one run of it. */
export interface RunRef {
  buildId: string;
  /** The run token: [0-9a-f]{16}. */
  run: string;
}

const TOKEN_CHARS = 16;

/** A new run's token: random, recorded with the claim (builds.runs) when a worker runs the build. */
export function freshRunToken(): string {
  return randomBytes(TOKEN_CHARS / 2).toString("hex");
}

/** Whether `s` has the shape of a token (read back from the database, it becomes part of names). */
export function isRunToken(s: unknown): s is string {
  return typeof s === "string" && /^[0-9a-f]{16}$/.test(s);
}

/** `<build>-<run>`, safe as a file name, a docker name part and a qemu -name. */
export function runName(ref: RunRef): string {
  return `${safeBuildId(ref.buildId)}-${ref.run}`;
}

function safeBuildId(buildId: string): string {
  return buildId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64) || "_";
}

/** Exactly what runName makes: a build id part, a dash, a token. */
const RUN_NAME = /^([A-Za-z0-9_-]{1,64})-([0-9a-f]{16})$/;

/**
 * The build id part and run token of a name read back from the host (a directory, a record), or
 * undefined when runName cannot have made it: such a name is never used to find or kill anything.
 */
export function parseRunName(name: unknown): { build: string; run: string } | undefined {
  if (typeof name !== "string") return undefined;
  const m = RUN_NAME.exec(name);
  return m ? { build: m[1], run: m[2] } : undefined;
}

/**
 * Where drivers keep what they leave on this host (os workspaces, qemu state): one directory per
 * user, `<tmpdir>/djinn-worker-<uid>`, that only this user may write to, so that what a worker
 * reads back there (and then kills or removes by) cannot have been planted by another user.
 */
export function hostStatePath(tmp = os.tmpdir()): string {
  return path.join(tmp, `djinn-worker-${process.getuid?.() ?? "user"}`);
}

/** hostStatePath, made 0700 if missing and checked to be this user's alone (../fs/private.ts); throws PrivateDirError otherwise. */
export function hostStateRoot(): Promise<string> {
  return ensurePrivateDir(hostStatePath());
}
