// The one way a build is submitted: the CLI's `submit`, the web API, a re-run and the push
// triggers all come here with what they were given, so a build is checked, stored and queued the
// same way whoever asks (docs/daemon.md, "All or nothing").
import type pg from "pg";
import type { Redis } from "ioredis";
import type { Crypto } from "../crypto/crypto.js";
import { queueDriverOf, queueList } from "../queue/names.js";
import { enqueue, QueueError } from "../queue/queue.js";
import { workersServing } from "../queue/inventory.js";
import type { BuildId } from "../queue/build-id.js";
import { insertBuild } from "../store/builds.js";
import { withdrawUnqueuedBuild } from "../store/cancel.js";
import { planBuild } from "../runner/plan.js";
import { EnvironmentError } from "../errors/errors.js";
import { checkSubmission, type Submission, type CheckedSubmission } from "./check.js";

export { checkSubmission, SUBMIT_FIELDS, API_FIELDS, type Submission, type CheckedSubmission, type FieldNames } from "./check.js";

/** What a submission needs of the installation. */
export interface SubmissionServices {
  pool: pg.Pool;
  redis: Redis;
  crypto: Crypto;
  /** The installation's queue prefix ([redis] queue). */
  queue: string;
  manifestLimit: number;
}

export interface Submitted {
  id: BuildId;
  /** The queue the build waits on. */
  list: string;
  /** How many live workers served that queue when it was submitted (0: it waits until one does). */
  serving: number;
  /** The manifest's warnings, with the masked values replaced. */
  warnings: string[];
}

/**
 * Checks `s` (an InputError naming the field or file on the first problem, nothing stored), then
 * stores the build and queues it. Redis is asked first, so with Redis away nothing is stored; a
 * push that fails after the rows are in withdraws them, unless a worker already took the build.
 */
export async function submitBuild(services: SubmissionServices, s: Submission, opts: { waitForWorker?: boolean } = {}): Promise<Submitted> {
  const checked = checkSubmission(s, services.manifestLimit);
  return storeAndQueue(services, checked, opts);
}

/** Stores and queues a build that checkSubmission passed. */
export async function storeAndQueue(services: SubmissionServices, c: CheckedSubmission, opts: { waitForWorker?: boolean } = {}): Promise<Submitted> {
  const { pool, redis, crypto, queue } = services;
  const driver = queueDriverOf(c.manifest.driver.type);
  const list = queueList(queue, driver);
  const serving = await workersServing(redis, queue, list);
  if (serving === 0 && opts.waitForWorker) throw new EnvironmentError(`no live worker serves queue ${list}: nothing stored (--wait-for-worker)`);
  const id = await insertBuild(pool, crypto, {
    manifestText: c.text,
    manifest: c.manifest,
    plan: (id) => planBuild(c.manifest, String(id)),
    env: c.env,
    secrets: c.secrets,
    keys: c.keys,
    notify: c.notify,
  });
  try {
    await enqueue(redis, queue, driver, id);
  } catch (err) {
    if (await withdrawUnqueuedBuild(pool, id)) throw new QueueError(`cannot queue the build on ${list}: ${(err as Error).message}; nothing stored`);
    // A worker took it (the push reached Redis, its reply did not): the build is queued.
  }
  return { id, list, serving, warnings: c.warnings };
}
