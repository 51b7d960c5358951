// A claimed build's driver: the environment is kept only while the claim holds, and the build's
// private keys are placed in it before the first job.
import { Readable } from "node:stream";
import type { Driver } from "../driver/driver.js";

/** A private key of the build, placed at ~/.ssh/<name>. */
export interface BuildKey {
  name: string;
  value: Buffer;
}

/**
 * The driver, checking the claim once the environment exists and before the build's private keys
 * are placed in ~/.ssh (the runner destroys it when that fails).
 */
export function claimedDriver(inner: Driver, keys: readonly BuildKey[], assertHeld: () => Promise<void>): Driver {
  return {
    async create(output, signal) {
      await inner.create(output, signal);
      // Before keys go in; without keys, the create-driver job's end (a write guarded by the claim) checks it a moment later.
      if (keys.length) await assertHeld();
      for (const k of keys) await inner.place(`~/.ssh/${k.name}`, Readable.from([k.value]), k.value.length, 0o600);
    },
    execute: (job) => inner.execute(job),
    place: (dest, source, size, mode) => inner.place(dest, source, size, mode),
    collect: (p) => inner.collect(p),
    glob: inner.glob ? (p) => inner.glob!(p) : undefined,
    packTar: inner.packTar ? (base, paths, signal) => inner.packTar!(base, paths, signal) : undefined,
    unpackTar: inner.unpackTar ? (base, archive, signal) => inner.unpackTar!(base, archive, signal) : undefined,
    destroy: () => inner.destroy(),
  };
}
