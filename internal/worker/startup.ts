// Start-up against servers that may not be answering yet (a machine booting PostgreSQL, Redis and
// the worker at once): wait for them with backoff, logging each try, and if they still do not
// answer, exit with a code that tells the service manager to start the worker again. What waiting
// cannot cure (a wrong password, an old schema) stops the start at once.
import type { Logger } from "../log/log.js";
import { serverUnavailable } from "../net/connect.js";
import { sleep } from "../timers/timers.js";
import { EnvironmentError } from "../errors/errors.js";

/** Exit status of a start that may succeed later (EX_TEMPFAIL): the systemd unit restarts on it. */
export const EXIT_TRY_AGAIN = 75;
/** How long start-up waits for PostgreSQL and Redis before exiting with EXIT_TRY_AGAIN. */
export const START_WAIT_MS = 30_000;

/** Start-up cannot go on: one line for the operator, and the exit status to end with. */
export class StartupError extends EnvironmentError {
  override name = "StartupError";
  constructor(message: string, exitCode = 1) {
    super(message, { exitCode });
  }
}

function unavailable(err: unknown): boolean {
  return (err as { unavailable?: unknown })?.unavailable === true || serverUnavailable(err);
}

/** Runs `probe` until it succeeds; retries only while the servers are not answering, for up to `waitMs`. */
export async function waitForServers(probe: () => Promise<void>, log: Logger, opts: { waitMs?: number; onWait?: (reason: string) => void } = {}): Promise<void> {
  const waitMs = opts.waitMs ?? START_WAIT_MS;
  const started = Date.now();
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      await probe();
      if (attempt > 1) log.info({ attempt }, "servers answering: starting");
      return;
    } catch (err) {
      const msg = (err as Error).message;
      if (!unavailable(err)) throw new StartupError(msg);
      const waited = Date.now() - started;
      if (waited + delay > waitMs) {
        throw new StartupError(`${msg} (still not answering after ${Math.round(waited / 1000)}s: exiting with status ${EXIT_TRY_AGAIN} to be started again)`, EXIT_TRY_AGAIN);
      }
      log.warn({ attempt, retryInMs: delay }, `${msg}: waiting for it to start`);
      opts.onWait?.(msg);
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }
}
