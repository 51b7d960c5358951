// The one way a build is submitted: the CLI's `submit`, the web API, a re-run and the push
// triggers all come here with what they were given, so a build is checked, stored and queued the
// same way whoever asks (docs/daemon.md, "All or nothing").
import type pg from "pg";
import type { Redis } from "ioredis";
import type { Crypto } from "../crypto/crypto.js";
import { queueDriverOf, queueList } from "../queue/names.js";
import { enqueueAll, QueueError } from "../queue/queue.js";
import { workersServing } from "../queue/inventory.js";
import type { BuildId } from "../queue/build-id.js";
import { inTransaction, insertBuildRows } from "../store/builds.js";
import { withdrawBatch } from "../store/cancel.js";
import { deliveredBuilds, insertRefusedBuild, insertTrigger, setDeliveryBuilds, takeDelivery, type RefusedManifest, type Trigger } from "../store/triggers.js";
import { planBuild } from "../runner/plan.js";
import { EnvironmentError } from "../errors/errors.js";
import { checkSubmission, type Submission, type CheckedSubmission } from "./check.js";

export type { RefusedManifest, Trigger } from "../store/triggers.js";

export { checkSubmission, checkManifest, isEmailAddress, SUBMIT_FIELDS, API_FIELDS, type Submission, type CheckedSubmission, type FieldNames } from "./check.js";

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
  const stored = await storeAndQueueAll(services, [{ checked: c }], opts);
  if (stored.duplicate) throw new Error("a submission without a delivery was taken for a redelivery");
  const [b] = stored.builds;
  return { id: b.id, list: b.list!, serving: b.serving!, warnings: c.warnings };
}

/** One build of a batch: a checked submission, or a manifest refused (stored as a failed build, so its pusher sees why). */
export interface BatchItem {
  checked?: CheckedSubmission;
  refused?: RefusedManifest;
  /** The push that started it. */
  trigger?: Trigger;
}

export interface StoredBuild {
  id: BuildId;
  /** The queue it waits on, and how many live workers served it; absent for a refused manifest. */
  list?: string;
  serving?: number;
  warnings: string[];
}

export type Batch = { duplicate: false; builds: StoredBuild[] } | { duplicate: true; builds: BuildId[] };

/**
 * Stores every build of `items` in one transaction (with `delivery`, which makes a second call
 * for the same delivery store nothing and answer duplicate), then queues them in one Redis
 * transaction. Redis is asked first, so with Redis away nothing is stored; a push that fails after
 * the rows are in withdraws them all (and the delivery), unless a worker already took one.
 */
export async function storeAndQueueAll(services: SubmissionServices, items: BatchItem[], opts: { waitForWorker?: boolean; delivery?: { provider: string; id: string } } = {}): Promise<Batch> {
  const { pool, redis, crypto, queue } = services;
  const queued = items.map((item) => {
    if (!item.checked) return undefined;
    const driver = queueDriverOf(item.checked.manifest.driver.type);
    return { driver, list: queueList(queue, driver), serving: 0 };
  });
  for (const q of queued) {
    if (!q) continue;
    q.serving = await workersServing(redis, queue, q.list);
    if (q.serving === 0 && opts.waitForWorker) throw new EnvironmentError(`no live worker serves queue ${q.list}: nothing stored (--wait-for-worker)`);
  }
  const { delivery } = opts;
  const ids = await inTransaction(pool, async (client) => {
    if (delivery && !(await takeDelivery(client, delivery.provider, delivery.id))) return undefined;
    const out: BuildId[] = [];
    for (const item of items) {
      const c = item.checked;
      const id = c
        ? await insertBuildRows(client, crypto, { manifestText: c.text, manifest: c.manifest, plan: (id) => planBuild(c.manifest, String(id)), env: c.env, secrets: c.secrets, keys: c.keys, notify: c.notify })
        : await insertRefusedBuild(client, item.refused!);
      if (item.trigger) await insertTrigger(client, id, item.trigger);
      out.push(id);
    }
    if (delivery) await setDeliveryBuilds(client, delivery.provider, delivery.id, out);
    return out;
  });
  if (!ids) return { duplicate: true, builds: (await deliveredBuilds(pool, delivery!.provider, delivery!.id)) ?? [] };
  const pushes = ids.flatMap((id, i) => (queued[i] ? [{ id, driver: queued[i]!.driver }] : []));
  try {
    if (pushes.length > 0) await enqueueAll(redis, queue, pushes);
  } catch (err) {
    const lists = [...new Set(queued.flatMap((q) => (q ? [q.list] : [])))].join(", ");
    if (await withdrawBatch(pool, pushes.map((p) => p.id), ids.filter((_, i) => !queued[i]), delivery)) {
      throw new QueueError(`cannot queue the build${pushes.length > 1 ? "s" : ""} on ${lists}: ${(err as Error).message}; nothing stored`);
    }
    // A worker took one (the push reached Redis, its reply did not): the builds are queued.
  }
  return { duplicate: false, builds: ids.map((id, i) => ({ id, list: queued[i]?.list, serving: queued[i]?.serving, warnings: items[i].checked?.warnings ?? [] })) };
}
