// How a cache entry can fail, apart from the store that raises it: the runner tells these apart
// without loading the store (and its gzip and hashing) for a build that keeps no cache.
import { EnvironmentError } from "../errors/errors.js";

export class CacheError extends EnvironmentError {
  override name = "CacheError";
}

/** An entry that is there but cannot be used: cut short, damaged, not an entry. */
export class CacheDamagedError extends CacheError {
  override name = "CacheDamagedError";
}

/** The entry would be larger than the store allows. */
export class CacheLimitError extends CacheError {
  override name = "CacheLimitError";
}
