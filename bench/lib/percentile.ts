/**
 * The p-th percentile of `xs` by nearest rank: the smallest sample with at least p% of the samples at or
 * below it. For 100 samples p99 is the 99th smallest, not the largest: one outlier in a hundred is what
 * a 99th percentile tolerates.
 */
export function percentile(xs: readonly number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((sorted.length * p) / 100));
  return sorted[Math.min(sorted.length, rank) - 1];
}
