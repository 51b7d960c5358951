// `djinn-worker submit`: read the flags and the manifest file, submit the build (../submission), print its id.
import { loadWorkerConfig, requireSections } from "../config/config.js";
import { Crypto } from "../crypto/crypto.js";
import { checkSubmission, storeAndQueue, SUBMIT_FIELDS } from "../submission/submission.js";
import { parseAssignments, parseSecrets, readKeys, readManifestFile } from "./input.js";
import { withPool, withRedis, type Out } from "./services.js";

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
 * Everything given is checked before any service is asked (submission/check.ts); then the shared
 * submission path stores and queues the build, all or nothing (docs/daemon.md).
 */
export async function submitCommand(opts: SubmitOptions, out: Out, warn: Out = process.stderr): Promise<number> {
  const cfg = loadWorkerConfig(opts.configFile);
  // The secrets first: an error about the manifest or --env shows none of their values.
  const secrets = parseSecrets(opts.secrets);
  const masks = secrets.map(([, value]) => value);
  const { text } = await readManifestFile(opts.manifest, { limit: cfg.manifestLimit, masks });
  const env = parseAssignments("--env", opts.env, masks);
  const keys = await readKeys(opts.keys ?? []);
  const checked = checkSubmission({ manifestSource: opts.manifest, manifest: text, env, secrets, keys, notify: opts.notify }, cfg.manifestLimit, SUBMIT_FIELDS);
  requireSections(cfg, "crypto", "database", "redis");
  const crypto = new Crypto(cfg.crypto!.block);
  return withPool(cfg, (pool) =>
    withRedis(cfg, async (redis) => {
      const { id, list, serving } = await storeAndQueue({ pool, redis, crypto, queue: cfg.queue, manifestLimit: cfg.manifestLimit }, checked, { waitForWorker: opts.waitForWorker });
      out.write(`${id}\n`);
      if (serving === 0) warn.write(`djinn-worker: warning: no live worker serves queue ${list}: build ${id} waits until one does (kill ${id} cancels it)\n`);
      return id;
    }),
  );
}
