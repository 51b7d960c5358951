// Paths confined to a root directory: a name from a manifest, a build or a store resolves under
// its root or is refused, and a resolved path (symlinks followed) is checked against the root.
import path from "node:path";

/** A name that would lead outside its root, or that is no name at all. */
export class ConfineError extends Error {
  override name = "ConfineError";
}

/**
 * Resolves `name` under `root`, refusing empty names, absolute ones, `..` and anything that would
 * land outside. `place` names the root in messages ("the store").
 */
export function confinedPath(root: string, name: string, place = root): string {
  if (name === "" || name.includes("\0")) throw new ConfineError(`invalid name ${JSON.stringify(name)}`);
  if (path.isAbsolute(name)) throw new ConfineError(`name ${JSON.stringify(name)} is absolute: names are relative to ${place}`);
  const parts = name.split(/[\\/]+/);
  if (parts.includes("..")) throw new ConfineError(`name ${JSON.stringify(name)} reaches outside ${place}`);
  const full = path.resolve(root, name);
  if (full === path.resolve(root) || !isInside(path.resolve(root), full)) throw new ConfineError(`name ${JSON.stringify(name)} reaches outside ${place}`);
  return full;
}

/** `target` resolved against `root` (an absolute `target` as it is), or undefined when that is outside `root`. */
export function resolveInside(root: string, target: string): string | undefined {
  const full = path.resolve(root, target);
  return isInside(path.resolve(root), full) ? full : undefined;
}

/** True when `target` (already resolved, symlinks included) is `root` or inside it. */
export function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}
