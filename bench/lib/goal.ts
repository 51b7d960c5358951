// How a benchmark says whether it reached one of issue 22's goals, the same way in each.
export function goal(what: string, ok: boolean): string {
  return `goal ${what}: ${ok ? "met" : "NOT met"}`;
}
