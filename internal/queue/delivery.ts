// A taken payload, as one object: where it ends (acknowledged, put back, dead-listed) is decided
// by calling one of its methods once, each retried under the one policy below.
import { ReplyError } from "ioredis";
import { deadline, sleep } from "../timers/timers.js";

export { asBuildId, type BuildId } from "./build-id.js";

/**
 * The retry policy of ack, requeue and dead: a write that fails because Redis is unreachable is
 * retried, with a backoff from 200 ms to 5 s, until Redis answers, for as long as it takes; only
 * `stop` (a forced shutdown) ends it: a write waiting then is let go, and one made after it gets one
 * attempt of at most LAST_ATTEMPT_MS (the hand-back at shutdown). A refusal by Redis (a reply
 * error) is not retried. Why:
 * the payload sits in this worker's processing list meanwhile, so giving up early loses nothing
 * either, but waiting is the only way the build ends as decided; a worker that dies or is forced
 * to exit before Redis returns leaves it to the backstop of docs/queue.md (its processing list
 * goes back on the queue when its lease runs out, and the heal sweep restores what Redis lost).
 */
export interface SettlePolicy {
  /** Aborted when the worker must exit now: a write still waiting is abandoned (the lease recovers it). */
  stop?: AbortSignal;
  /** Told of each failed attempt that is retried. */
  onRetry?: (what: string, err: unknown) => void;
}

const FIRST_DELAY_MS = 200;
const MAX_DELAY_MS = 5000;
const LAST_ATTEMPT_MS = 5000;

export class DeliveryAbandoned extends Error {
  override name = "DeliveryAbandoned";
}

/** The writes a delivery's end is made of (WorkerQueue's), each a single atomic Redis command or script. */
export interface DeliveryWrites {
  ack(list: string, raw: Buffer): Promise<unknown>;
  moveBack(list: string, raw: Buffer, next: boolean): Promise<unknown>;
  moveDead(list: string, raw: Buffer, reason: string): Promise<unknown>;
}

export type DeliveryEnd = { how: "ack" } | { how: "requeue"; reason: string } | { how: "dead"; reason: string };

export class Delivery {
  /** How it ended, once one of ack, requeue or dead was called; later calls are no-ops. */
  end?: DeliveryEnd;

  constructor(
    private readonly writes: DeliveryWrites,
    /** The queue it was taken from. */
    readonly list: string,
    /** Its bytes exactly as Redis holds them: what removes it from the processing list, whatever they are. */
    readonly raw: Buffer,
    private readonly policy: SettlePolicy = {},
  ) {}

  /** The build is recorded (or was already): forget the payload. False when it had already ended. */
  ack(): Promise<boolean> {
    return this.finish({ how: "ack" }, () => this.writes.ack(this.list, this.raw));
  }

  /** Puts it back on its queue: `next` = where consumers take from (runs next), else behind everything queued. */
  requeue(reason: string, where: "next" | "behind" = "next"): Promise<boolean> {
    return this.finish({ how: "requeue", reason }, () => this.writes.moveBack(this.list, this.raw, where === "next"));
  }

  /** Moves it to the dead list with the reason. */
  dead(reason: string): Promise<boolean> {
    return this.finish({ how: "dead", reason }, () => this.writes.moveDead(this.list, this.raw, reason));
  }

  private async finish(end: DeliveryEnd, write: () => Promise<unknown>): Promise<boolean> {
    if (this.end) return false;
    // Claimed before the first await: a second call while this one waits for Redis is a no-op too.
    this.end = end;
    await retryWrite(end.how, write, this.policy);
    return true;
  }
}

/** A Redis error that waiting may cure: not a reply (Redis answered and refused). */
function transient(err: unknown): boolean {
  return !(err instanceof ReplyError) && !(err instanceof DeliveryAbandoned);
}

async function retryWrite(what: string, write: () => Promise<unknown>, policy: SettlePolicy): Promise<void> {
  const { stop } = policy;
  if (stop?.aborted) {
    const last = deadline(LAST_ATTEMPT_MS);
    try {
      await untilStopped(write(), last.signal, what);
    } finally {
      last.clear();
    }
    return;
  }
  let delay = FIRST_DELAY_MS;
  for (;;) {
    if (stop?.aborted) throw new DeliveryAbandoned(`${what} abandoned: the worker is stopping`);
    try {
      await untilStopped(write(), stop, what);
      return;
    } catch (err) {
      if (!transient(err)) throw err;
      policy.onRetry?.(what, err);
      await sleep(delay, { unref: true, signal: stop });
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }
}

/** A write still waiting for Redis (ioredis queues commands while disconnected) is let go when `stop` aborts. */
function untilStopped<T>(p: Promise<T>, stop: AbortSignal | undefined, what: string): Promise<T> {
  if (!stop) return p;
  return new Promise<T>((resolve, reject) => {
    const onStop = () => reject(new DeliveryAbandoned(`${what} abandoned: the worker is stopping and Redis does not answer`));
    if (stop.aborted) return onStop();
    stop.addEventListener("abort", onStop, { once: true });
    p.then(resolve, reject).finally(() => stop.removeEventListener("abort", onStop));
  });
}
