// `djinn-worker submit`: store a build, queue it, print its id.
import { loadWorkerConfig, requireSections } from "../config/config.js";
import { Crypto } from "../crypto/crypto.js";
import { queueDriverOf } from "../queue/names.js";
import { enqueue, QueueError } from "../queue/queue.js";
import { workersServing } from "../queue/inventory.js";
import { insertBuild } from "../store/builds.js";
import { withdrawUnqueuedBuild } from "../store/cancel.js";
import { planBuild } from "../runner/plan.js";
import { EnvironmentError, InputError } from "../errors/errors.js";
import { parseAssignments, parseSecrets, readKeys, readManifestFile } from "./input.js";
import { withPool, withRedis, type Out } from "./services.js";
import { queueOfDriver } from "./waiting.js";

const EMAIL = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

export interface SubmitOptions {
  manifest: string;
  configFile: string;
  env: string[];
  secrets: string[];
  notify: string[];
  /** NAME=FILE: a private key placed at ~/.ssh/NAME in the build, stored encrypted. */
  keys?: string[];
  /** Refuse (nothing stored) when no live worker serves the build's queue. */
  waitForWorker?: boolean;
}

/**
 * All or nothing (docs/daemon.md): Redis is asked first, so with Redis away nothing is stored;
 * a push that fails after the rows are in withdraws them, unless a worker already took the build.
 */
export async function submitCommand(opts: SubmitOptions, out: Out, warn: Out = process.stderr): Promise<number> {
  const cfg = loadWorkerConfig(opts.configFile);
  // The secrets first: an error about the manifest or --env shows none of their values.
  const secrets = parseSecrets(opts.secrets);
  const masks = secrets.map(([, value]) => value);
  const { manifest, text } = await readManifestFile(opts.manifest, { limit: cfg.manifestLimit, masks });
  const env = parseAssignments("--env", opts.env, masks);
  const keys = await readKeys(opts.keys ?? []);
  for (const a of opts.notify) if (!EMAIL.test(a)) throw new InputError(`--notify ${JSON.stringify(a)}: not an email address`);
  requireSections(cfg, "crypto", "database", "redis");
  const crypto = new Crypto(cfg.crypto!.block);
  const list = queueOfDriver(cfg, manifest.driver.type);
  return withPool(cfg, (pool) =>
    withRedis(cfg, async (redis) => {
      const serving = await workersServing(redis, cfg.queue, list);
      if (serving === 0 && opts.waitForWorker) throw new EnvironmentError(`no live worker serves queue ${list}: nothing stored (--wait-for-worker)`);
      const id = await insertBuild(pool, crypto, { manifestText: text, manifest, plan: (id) => planBuild(manifest, String(id)), env, secrets, keys, notify: opts.notify });
      try {
        await enqueue(redis, cfg.queue, queueDriverOf(manifest.driver.type), id);
      } catch (err) {
        if (await withdrawUnqueuedBuild(pool, id)) throw new QueueError(`cannot queue the build on ${list}: ${(err as Error).message}; nothing stored`);
        // A worker took it (the push reached Redis, its reply did not): the build is queued.
      }
      out.write(`${id}\n`);
      if (serving === 0) warn.write(`djinn-worker: warning: no live worker serves queue ${list}: build ${id} waits until one does (kill ${id} cancels it)\n`);
      return id;
    }),
  );
}
