// Commit statuses, posted by the web process: when a pushed build of a forge whose [[providers]]
// table has a token changes status (the daemon's notifications, and the builds a webhook here
// just started), its commit is told: pending while queued or running, then the result, linking to
// the build's page. Each change is posted once across web processes (forge_statuses); a sweep
// at start, after the notifications' connection comes back and every minute posts what was
// missed. A forge that is away is retried a few times, then logged; nothing else waits on it.
import type pg from "pg";
import { providerConfig, type ProviderConfig, type ProviderName, type WorkerConfig } from "../config/config.js";
import type { Logger } from "../log/log.js";
import { claimPosting, pushedBuild, recordPosted, releasePosting, unpostedBuilds, type PushedBuild } from "../store/forge-statuses.js";
import { deadline, sleep } from "../timers/timers.js";
import { forgeState, RepositoryNameError, statusRequest, worthRetrying, type StatusRequest } from "./requests.js";

/** Tries of one post, and the wait before the second (doubled each time). */
export const POST_ATTEMPTS = 4;
export const FIRST_BACKOFF_MS = 1000;
/** Longest one request may take. */
const REQUEST_TIMEOUT_MS = 10_000;
/** How long a process holds a build's posting: longer than all tries of a post take (about 50 s). */
const CLAIM_MS = 2 * 60_000;
/** How often the sweep looks for changes not posted, and how far back. */
export const SWEEP_MS = 60_000;
export const SWEEP_DAYS = 7;
const SWEEP_LIMIT = 200;

type Outcome = { posted: true } | { posted: false; permanent: boolean; why: string };

/** What the forge answered, in a few words for the log (never a header: the token is in one). */
async function refusal(res: Response): Promise<string> {
  let message = "";
  try {
    const body = (await res.json()) as { message?: unknown };
    if (typeof body?.message === "string") message = `: ${body.message.slice(0, 200)}`;
  } catch {
    // Not JSON: the status says enough.
  }
  return `HTTP ${res.status}${message}`;
}

/** Sends `req`, trying again while the forge is away or busy; stops early when `signal` aborts. */
export async function sendStatus(req: StatusRequest, signal: AbortSignal, attempts = POST_ATTEMPTS, backoffMs = FIRST_BACKOFF_MS): Promise<Outcome> {
  let why = "";
  for (let attempt = 1; attempt <= attempts && !signal.aborted; attempt++) {
    if (attempt > 1) await sleep(backoffMs * 2 ** (attempt - 2), { signal });
    const limit = deadline(REQUEST_TIMEOUT_MS, signal);
    try {
      const res = await fetch(req.url, { method: req.method, headers: req.headers, body: JSON.stringify(req.body), signal: limit.signal, redirect: "error" });
      if (res.ok) {
        await res.body?.cancel();
        return { posted: true };
      }
      why = await refusal(res);
      if (!worthRetrying(res.status)) return { posted: false, permanent: true, why };
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      why = limit.signal.aborted && !signal.aborted ? `no answer within ${REQUEST_TIMEOUT_MS} ms` : (cause?.code ?? cause?.message ?? (err as Error).message);
    } finally {
      limit.clear();
    }
  }
  return { posted: false, permanent: false, why: `${why} (${attempts} tries)` };
}

export class StatusReporter {
  private readonly running = new Map<number, Promise<void>>();
  /** Builds whose status changed again while their post was under way. */
  private readonly again = new Set<number>();
  /** Builds no push started: their notifications (every output row) cost no query. */
  private readonly unpushed = new Set<number>();
  private readonly closing = new AbortController();
  private timer?: NodeJS.Timeout;
  private sweeping?: Promise<void>;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly cfg: WorkerConfig,
    private readonly providers: ProviderConfig[],
    private readonly log: Logger,
  ) {}

  /** A reporter when some [[providers]] table has a token; undefined when none has. */
  static create(pool: pg.Pool, cfg: WorkerConfig, log: Logger): StatusReporter | undefined {
    const providers = cfg.providers.filter((p) => p.token && p.apiUrl);
    return providers.length ? new StatusReporter(pool, cfg, providers, log) : undefined;
  }

  /** Posts what changed while no web process ran, then looks again every SWEEP_MS. */
  start(): void {
    this.sweep();
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  /** Build `id` may have changed; undefined: any build may have (notifications were missed). */
  changed(id: number | undefined): void {
    if (this.closing.signal.aborted) return;
    if (id === undefined) return this.sweep();
    if (this.unpushed.has(id)) return;
    if (this.running.has(id)) {
      this.again.add(id);
      return;
    }
    const run = this.report(id)
      .catch((err) => this.log.warn({ build: id, err: (err as Error).message }, "forge status: cannot read or record the build's status"))
      .finally(() => {
        this.running.delete(id);
        if (this.again.delete(id)) this.changed(id);
      });
    this.running.set(id, run);
  }

  private sweep(): void {
    if (this.sweeping || this.closing.signal.aborted) return;
    const names = new Set<string>(this.providers.flatMap((p) => (p.name === "gitea" || p.name === "forgejo" ? ["gitea", "forgejo"] : [p.name])));
    this.sweeping = (async () => {
      const ids = await unpostedBuilds(this.pool, [...names], SWEEP_DAYS, SWEEP_LIMIT);
      // One at a time: a forge that is away holds up the sweep, never the notified builds.
      for (const id of ids) {
        if (this.closing.signal.aborted) return;
        this.changed(id);
        await this.running.get(id);
      }
    })()
      .catch((err) => this.log.warn({ err: (err as Error).message }, "forge status: cannot look for builds to post"))
      .finally(() => (this.sweeping = undefined));
  }

  private providerOf(b: PushedBuild): ProviderConfig | undefined {
    const p = providerConfig(this.cfg, b.provider as ProviderName);
    return p && this.providers.includes(p) ? p : undefined;
  }

  /** Posts build `id`'s status while it differs from the one last posted, holding the claim meanwhile. */
  private async report(id: number): Promise<void> {
    const seen = await pushedBuild(this.pool, id);
    if (!seen) {
      if (this.unpushed.size > 10_000) this.unpushed.clear();
      this.unpushed.add(id);
      return;
    }
    if (seen.status === seen.reported || !this.providerOf(seen)) return;
    if (!(await claimPosting(this.pool, id, CLAIM_MS))) return;
    try {
      for (let b = await pushedBuild(this.pool, id); b && b.status !== b.reported && !this.closing.signal.aborted; b = await pushedBuild(this.pool, id)) {
        if (!(await this.post(b, this.providerOf(b)!))) return;
      }
    } finally {
      await releasePosting(this.pool, id);
    }
  }

  /** Posts `b`'s status; true when it was posted or refused for good (recorded), false to try again later. */
  private async post(b: PushedBuild, p: ProviderConfig): Promise<boolean> {
    let req: StatusRequest;
    try {
      req = statusRequest({ provider: b.provider as ProviderName, repository: b.repository, commit: b.commit, manifest: b.manifest, buildId: b.id, status: b.status }, { url: p.apiUrl!, token: p.token! }, this.cfg.web?.url);
    } catch (err) {
      if (!(err instanceof RepositoryNameError)) throw err;
      await recordPosted(this.pool, b.id, b.status);
      this.log.warn({ build: b.id, provider: b.provider, err: err.message }, "forge status refused: not tried again");
      return true;
    }
    const facts = { build: b.id, provider: b.provider, repository: b.repository, commit: b.commit, state: forgeState(b.provider as ProviderName, b.status) };
    const outcome = await sendStatus(req, this.closing.signal);
    if (outcome.posted) {
      await recordPosted(this.pool, b.id, b.status);
      this.log.info(facts, "forge status posted");
      return true;
    }
    if (this.closing.signal.aborted) return false;
    if (outcome.permanent) {
      // Refused (a wrong token, no such repository): the same request would be refused again.
      await recordPosted(this.pool, b.id, b.status);
      this.log.warn({ ...facts, err: outcome.why }, "forge status refused: not tried again");
      return true;
    }
    this.log.warn({ ...facts, err: outcome.why }, "forge status not posted: the forge is away; tried again at the next sweep");
    return false;
  }

  /** Stops the sweep and cuts short the posts under way (their builds are posted by the next start). */
  async close(): Promise<void> {
    this.closing.abort();
    clearInterval(this.timer);
    await Promise.allSettled([...this.running.values(), this.sweeping]);
  }
}
