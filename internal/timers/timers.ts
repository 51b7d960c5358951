// Timers: waiting, and bounding a wait, in one place.

/**
 * The longest wait a Node.js timer holds (2^31-1 ms, about 596 h): a longer one fires after 1 ms
 * with a warning. Durations that end in a timer are refused beyond it (internal/config/duration.ts).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Resolves after `ms`, or at once when `signal` aborts (a wait the caller may cut short). With
 * `unref`, the timer does not keep the process alive: for a backoff that must not delay an exit
 * (the daemon's retries).
 */
export function sleep(ms: number, opts: { unref?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = opts;
  return new Promise<void>((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", finish);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    if (opts.unref) timer.unref();
    if (signal?.aborted) finish();
    else signal?.addEventListener("abort", finish, { once: true });
  });
}

/**
 * A signal aborted after `ms` or with `parent`. A plain timer rather than AbortSignal.timeout
 * composed with AbortSignal.any, whose timeout can be collected before it fires.
 */
export function deadline(ms: number, parent?: AbortSignal): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = setTimeout(abort, ms);
  parent?.addEventListener("abort", abort, { once: true });
  if (parent?.aborted) abort();
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      parent?.removeEventListener("abort", abort);
    },
  };
}

/** `p`, or a rejection naming `what` once `ms` pass: for a wait that must end (a server that may never answer). */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))),
  ]);
}
