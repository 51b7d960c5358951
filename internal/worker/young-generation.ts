// The daemon's young generation is kept at V8's initial size (two 1 MiB semi-spaces) instead of
// growing to 16 MiB while the libraries load at start: an idle worker then holds some 5 MiB less
// (bench/queue.ts). Set at run time, not as a command-line flag: a flag on the release
// executable's command line (NODE_OPTIONS) makes V8 reject the executable's code cache, which
// costs more than it saves; this one is read each time V8 would grow the space.
import { setFlagsFromString } from "node:v8";

/** Called before the daemon's modules load. */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}
