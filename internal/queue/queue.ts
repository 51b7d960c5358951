// The Redis side of the queue protocol (docs/queue.md): one list per driver, a per-worker
// processing list that holds every build a worker has taken until it is acknowledged, a
// heartbeat key under a lease, and an atomic script that gives a dead worker's builds back.
import os from "node:os";
import { randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import type { WorkerConfig } from "../config/config.js";
import { serverAddress } from "../net/address.js";
import { connectReason, serverUnavailable } from "../net/connect.js";
import { deadList, heartbeatKey, processingList, queueList, registryKey } from "./names.js";
import { EnvironmentError } from "../errors/errors.js";
import { asBuildId, Delivery, type BuildId, type DeliveryWrites, type SettlePolicy } from "./delivery.js";

/** What a producer pushes: the build's id, and when it was queued (Unix milliseconds) for the queue-wait metric. */
export interface Payload {
  id: BuildId;
  enqueued_at?: number;
}

export class QueueError extends EnvironmentError {
  override name = "QueueError";
  /** Redis did not answer (as opposed to refusing what was asked): waiting may cure it. */
  unavailable = false;
}

export function newWorkerId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

export function redisOptions(cfg: NonNullable<WorkerConfig["redis"]>, extra: RedisOptions = {}): RedisOptions {
  const { host, port } = serverAddress(cfg.addr, 6379);
  return {
    host,
    port,
    password: cfg.password || undefined,
    db: cfg.db,
    lazyConnect: true,
    // Commands wait for the connection to come back rather than fail: outages are ridden out.
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    ...extra,
  };
}

/** Connects once without retrying, so a bad address fails at start-up with one clear line. */
export async function probeRedis(cfg: NonNullable<WorkerConfig["redis"]>): Promise<void> {
  const client = new Redis(redisOptions(cfg, { retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 5000 }));
  let lastError: unknown;
  client.on("error", (err) => (lastError = err));
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    const e = new QueueError(`cannot connect to Redis at ${cfg.addr}: ${connectReason(lastError ?? err)}`);
    e.unavailable = serverUnavailable(lastError ?? err);
    throw e;
  } finally {
    client.disconnect();
  }
}

/** A payload's bytes as text, or undefined when they are not valid UTF-8 (a decoding would change them). */
function payloadText(raw: Buffer | string): string | undefined {
  if (typeof raw === "string") return raw;
  const text = raw.toString("utf8");
  return Buffer.from(text, "utf8").equals(raw) ? text : undefined;
}

/** Most bytes a payload may have: it is a small JSON object, and a huge one is not decoded or parsed. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/** Parses a payload (its bytes, as Redis holds them); the reason it is unusable otherwise. */
export function parsePayload(raw: Buffer | string): Payload | string {
  const size = typeof raw === "string" ? Buffer.byteLength(raw) : raw.length;
  if (size > MAX_PAYLOAD_BYTES) return `payload is ${size} bytes, more than the ${MAX_PAYLOAD_BYTES} a payload may have`;
  const text = payloadText(raw);
  if (text === undefined) return "payload is not valid UTF-8";
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return "payload is not valid JSON";
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "payload is not a JSON object";
  const id = (v as Record<string, unknown>).id;
  const n = asBuildId(typeof id === "string" && /^[0-9]+$/.test(id) ? Number(id) : id);
  if (n === undefined) return 'payload has no positive integer "id"';
  const at = (v as Record<string, unknown>).enqueued_at;
  return { id: n, enqueued_at: typeof at === "number" ? at : undefined };
}

/** Most bytes of a payload a dead-list entry keeps: enough to recognise it, never a huge payload whole. */
export const DEAD_PAYLOAD_BYTES = 4096;

export interface DeadPayload {
  payload: string;
  /** The kept bytes exactly, when they are not valid UTF-8 (`payload` then shows them with U+FFFD). */
  payload_base64?: string;
  payload_bytes?: number;
  truncated?: true;
}

/**
 * A payload as a dead-list entry keeps it: whole when small, else its first DEAD_PAYLOAD_BYTES and
 * its size; bytes that are not UTF-8 also in base64, so none is lost to the decoding.
 */
export function deadPayload(raw: Buffer | string): DeadPayload {
  const bytes = typeof raw === "string" ? Buffer.from(raw, "utf8") : raw;
  const cut = bytes.length > DEAD_PAYLOAD_BYTES;
  // Cut on a character boundary: a split UTF-8 sequence would decode to U+FFFD.
  const kept = cut ? bytes.subarray(0, DEAD_PAYLOAD_BYTES) : bytes;
  const prefix = new TextDecoder().decode(kept, { stream: cut });
  const out: DeadPayload = { payload: prefix };
  // Valid UTF-8 decodes back to the same bytes (up to a sequence the cut split, which a streaming decode holds back).
  const again = Buffer.from(prefix, "utf8");
  if ((!cut && again.length !== kept.length) || !kept.subarray(0, again.length).equals(again)) out.payload_base64 = kept.toString("base64");
  if (cut) Object.assign(out, { payload_bytes: bytes.length, truncated: true });
  return out;
}

/** The producer's half: LPUSH a payload naming an existing build (its rows are committed first). */
export async function enqueue(redis: Redis, prefix: string, driver: string, id: BuildId): Promise<void> {
  const payload: Payload = { id, enqueued_at: Date.now() };
  await redis.lpush(queueList(prefix, driver), JSON.stringify(payload));
}

/** Pushes several builds in one MULTI: all of them reach their queues, or none does. */
export async function enqueueAll(redis: Redis, prefix: string, builds: { driver: string; id: BuildId }[]): Promise<void> {
  const multi = redis.multi();
  for (const b of builds) multi.lpush(queueList(prefix, b.driver), JSON.stringify({ id: b.id, enqueued_at: Date.now() } satisfies Payload));
  const replies = await multi.exec();
  const failed = replies?.find(([err]) => err);
  if (!replies || failed) throw failed?.[0] ?? new Error("the transaction was discarded");
}

// Moves the first build found on any of the queues into its processing list.
const TAKE_ANY = `
for i = 1, #KEYS, 2 do
  local v = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'RIGHT', 'LEFT')
  if v then return {KEYS[i], v} end
end
return false`;

// Removes one copy of a payload from a processing list and pushes it somewhere else, atomically.
const MOVE_ONE = `
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if ARGV[3] == 'right' then redis.call('RPUSH', KEYS[2], ARGV[2]) else redis.call('LPUSH', KEYS[2], ARGV[2]) end
return 1`;

// Gives a dead worker's builds back: when its heartbeat key is gone, every processing list it
// had goes back onto its queue, at the end consumers take from, oldest first. ARGV[2] is what
// names.ts's processingList appends to a list's name for this worker. The worker is forgotten
// only on a pass that finds nothing: a frozen (not dead) worker's BLMOVE still waiting in Redis
// is served the build just pushed back, into that worker's processing list again.
const RECOVER = `
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local lists = redis.call('HGET', KEYS[1], ARGV[1])
local n = 0
if lists then
  for _, q in ipairs(cjson.decode(lists)) do
    local p = q .. ARGV[2]
    while redis.call('LMOVE', p, q, 'LEFT', 'RIGHT') do n = n + 1 end
  end
end
if n == 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n`;

export class WorkerQueue {
  private rotation = 0;

  constructor(
    readonly redis: Redis,
    /** A connection of its own: blocking commands hold it. */
    private readonly blocking: Redis,
    readonly prefix: string,
    readonly workerId: string,
    readonly lists: string[],
    private readonly leaseMs: number,
  ) {
    redis.defineCommand("djinnTakeAny", { lua: TAKE_ANY });
    redis.defineCommand("djinnMoveOne", { numberOfKeys: 2, lua: MOVE_ONE });
    redis.defineCommand("djinnRecover", { numberOfKeys: 2, lua: RECOVER });
  }

  private processing(list: string): string {
    return processingList(list, this.workerId);
  }

  /** Registers this worker and renews its lease; repeated every heartbeat so a restarted Redis learns it again. */
  async heartbeat(): Promise<void> {
    await this.redis
      .multi()
      .set(heartbeatKey(this.prefix, this.workerId), JSON.stringify({ host: os.hostname(), pid: process.pid, lists: this.lists, at: Date.now() }), "PX", this.leaseMs)
      .hset(registryKey(this.prefix), this.workerId, JSON.stringify(this.lists))
      .exec();
  }

  /** Takes one build into this worker's processing list, waiting up to `timeoutSeconds`; it ends by one call of the delivery's. */
  async take(timeoutSeconds: number, policy?: SettlePolicy): Promise<Delivery | null> {
    if (this.lists.length > 1) {
      const keys = this.lists.flatMap((l) => [l, this.processing(l)]);
      const script = this.redis as unknown as { djinnTakeAnyBuffer(n: number, ...args: string[]): Promise<[Buffer, Buffer] | null> };
      const got = await script.djinnTakeAnyBuffer(keys.length, ...keys);
      if (got) return new Delivery(this.writes, got[0].toString(), got[1], policy);
      // Nothing anywhere: block on one list at a time, in turn.
      timeoutSeconds = Math.min(timeoutSeconds, 1);
    }
    const list = this.lists[this.rotation++ % this.lists.length];
    const raw = await this.blocking.blmoveBuffer(list, this.processing(list), "RIGHT", "LEFT", timeoutSeconds);
    return raw === null ? null : new Delivery(this.writes, list, raw, policy);
  }

  private move(list: string, raw: Buffer, to: string, value: Buffer | string, end: "left" | "right"): Promise<number> {
    return (this.redis as unknown as { djinnMoveOne(...args: (string | Buffer)[]): Promise<number> }).djinnMoveOne(this.processing(list), to, raw, value, end);
  }

  /** The writes that end a taken payload: only its Delivery (./delivery.ts) calls them. */
  private readonly writes: DeliveryWrites = {
    ack: (list, raw) => this.redis.lrem(this.processing(list), 1, raw),
    moveBack: (list, raw, next) => this.move(list, raw, list, raw, next ? "right" : "left"),
    moveDead: (list, raw, reason) => {
      const entry = JSON.stringify({ ...deadPayload(raw), queue: list, reason, worker: this.workerId, at: new Date().toISOString() });
      return this.move(list, raw, deadList(this.prefix), entry, "left");
    },
  };

  /** Gives back `worker`'s builds when its lease is gone: how many went back, or -1 while it holds. */
  private async recover(worker: string): Promise<number> {
    const script = this.redis as unknown as { djinnRecover(...args: string[]): Promise<number> };
    return Number(await script.djinnRecover(registryKey(this.prefix), heartbeatKey(this.prefix, worker), worker, processingList("", worker)));
  }

  /** Recovers the builds of every registered worker whose lease has run out; returns how many went back. */
  async recoverDead(): Promise<{ worker: string; builds: number }[]> {
    const workers = await this.redis.hkeys(registryKey(this.prefix));
    const out: { worker: string; builds: number }[] = [];
    for (const w of workers) {
      if (w === this.workerId) continue;
      const n = await this.recover(w);
      if (n > 0) out.push({ worker: w, builds: n });
    }
    return out;
  }

  /** On a clean exit: drops the lease and puts back anything still in this worker's processing lists. */
  async leave(): Promise<number> {
    await this.redis.del(heartbeatKey(this.prefix, this.workerId));
    return this.recover(this.workerId);
  }

  /** Payloads in this worker's processing lists (to find ones whose BLMOVE reply was lost in a disconnect). */
  async held(policy?: SettlePolicy): Promise<Delivery[]> {
    const out: Delivery[] = [];
    for (const list of this.lists) {
      for (const raw of await this.redis.lrangeBuffer(this.processing(list), 0, -1)) out.push(new Delivery(this.writes, list, raw, policy));
    }
    return out;
  }
}
