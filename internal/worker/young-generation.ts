// While the daemon waits for its first build, V8's young generation stays at its initial size (two
// 1 MiB semi-spaces) instead of growing to 16 MiB as the libraries load: an idle worker holds some
// 5 MiB less (bench/queue.ts). With the first build it may grow again, as V8 would have it: a small
// one slows streaming a job's output by a fifth. V8 reads this setting each time it would grow the
// space, so it is set at run time, not on the command line: a V8 flag there (NODE_OPTIONS) makes V8
// reject the release executable's code cache, which costs more memory than it saves.
import { setFlagsFromString } from "node:v8";

const V8_DEFAULT_GROWTH = 2;
let small = false;

/** Called before the daemon's modules load. */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
  small = true;
}

/** Called when a build arrives. */
export function letYoungGenerationGrow(): void {
  if (!small) return;
  setFlagsFromString(`--semi-space-growth-factor=${V8_DEFAULT_GROWTH}`);
  small = false;
}
