// The host as other local users share it: a directory everyone may write to, as /tmp is, and the
// os driver's sweep of the host run as a worker with that TMPDIR runs it.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { defaultDriverConfig } from "../../internal/config/config.js";
import { getDriver } from "../../internal/driver/driver.js";
import "../../internal/driver/all.js";

/** A fresh directory every user may write to, sticky, as /tmp is; the caller removes it. */
export async function sharedTmp(): Promise<string> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-shared-tmp-"));
  await fs.chmod(tmp, 0o1777);
  return tmp;
}

/** `fn` run with TMPDIR set to `tmp`, as in a worker started with it. */
export async function withTmp<T>(tmp: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
}

/** One sweep of the host by the os driver, as a worker whose TMPDIR is `tmp` does it every minute; resolves when it is done. */
export async function sweepHost(tmp: string): Promise<void> {
  const entry = await getDriver("os");
  await withTmp(tmp, () => entry.sweep!(defaultDriverConfig(), pino({ level: "silent" })));
}
