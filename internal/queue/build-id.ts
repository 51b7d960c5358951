// A build's id, one type from the payload that names it to the acknowledgement. Apart from the
// delivery (./delivery.ts), which loads the Redis client: commands that only parse an id do not.

/** A build's id (`builds.id`), from the payload that names it to the acknowledgement. */
export type BuildId = number & { readonly __buildId: unique symbol };

/** A positive safe integer as a build id; anything else is undefined. */
export function asBuildId(n: unknown): BuildId | undefined {
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? (n as BuildId) : undefined;
}
