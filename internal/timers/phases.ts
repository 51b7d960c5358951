// Where a build's time goes on a worker: named marks, each span measured from the mark before,
// logged with the build's "build finished" line and read by bench/queue.ts.
import { performance } from "node:perf_hooks";

export class PhaseClock {
  private last = performance.now();
  private readonly spans: Record<string, number> = {};

  /** Ends the phase `name` now; a phase marked twice keeps its first end. */
  mark(name: string): void {
    const now = performance.now();
    if (!(name in this.spans)) this.spans[name] = Math.round((now - this.last) * 100) / 100;
    this.last = now;
  }

  /** Each phase's milliseconds, in the order they ended. */
  get ms(): Readonly<Record<string, number>> {
    return this.spans;
  }
}
