// `djinn-worker submit`: store a build, queue it, print its id.
import { loadWorkerConfig, requireSections } from "../config/config.js";
import { Crypto } from "../crypto/crypto.js";
import { queueDriverOf } from "../queue/names.js";
import { enqueue } from "../queue/queue.js";
import { insertBuild } from "../store/builds.js";
import { planBuild } from "../runner/plan.js";
import { InputError } from "../errors/errors.js";
import { parseAssignments, parseSecrets, readKeys, readManifestFile } from "./input.js";
import { withPool, withRedis, type Out } from "./services.js";

const EMAIL = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

export interface SubmitOptions {
  manifest: string;
  configFile: string;
  env: string[];
  secrets: string[];
  notify: string[];
  /** NAME=FILE: a private key placed at ~/.ssh/NAME in the build, stored encrypted. */
  keys?: string[];
}

export async function submitCommand(opts: SubmitOptions, out: Out): Promise<number> {
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
  return withPool(cfg, async (pool) => {
    const id = await insertBuild(pool, crypto, { manifestText: text, manifest, plan: (id) => planBuild(manifest, String(id)), env, secrets, keys, notify: opts.notify });
    await withRedis(cfg, (redis) => enqueue(redis, cfg.queue, queueDriverOf(manifest.driver.type), id));
    out.write(`${id}\n`);
    return id;
  });
}
