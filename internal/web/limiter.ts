// How failed sign-ins are slowed: after `max` failures for a name (or from an address) within
// `windowMs`, further tries for it are refused unchecked until the oldest failure leaves the
// window. Per web process, in memory: a guesser gets at most `max` tries per window per process.
// Pure (the clock is given), so it is tested without a server.

export class SignInLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    readonly max = 5,
    readonly windowMs = 15 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `key` may try again; 0 when it may now. */
  wait(key: string): number {
    const recent = this.recent(key);
    return recent.length < this.max ? 0 : recent[0] + this.windowMs - this.now();
  }

  fail(key: string): void {
    const recent = this.recent(key);
    recent.push(this.now());
    this.failures.set(key, recent);
    // Keys whose failures have all aged out go, so a flood of names does not grow the map for ever.
    if (this.failures.size > 10_000) for (const k of [...this.failures.keys()]) if (this.recent(k).length === 0) this.failures.delete(k);
  }

  succeed(key: string): void {
    this.failures.delete(key);
  }

  private recent(key: string): number[] {
    const since = this.now() - this.windowMs;
    return (this.failures.get(key) ?? []).filter((t) => t > since);
  }
}
