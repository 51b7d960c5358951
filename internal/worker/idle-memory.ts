// While the daemon waits for its first build, V8's young generation stays at its initial size (two
// 1 MiB semi-spaces) instead of growing to 16 MiB as the libraries load: an idle worker holds some
// 5 MiB less (bench/queue.ts). With the first build it may grow again, as V8 would have it: a small
// one slows streaming a job's output by a fifth. V8 reads this setting each time it would grow the
// space, so it is set at run time, not on the command line: a V8 flag there (NODE_OPTIONS) makes V8
// reject the release executable's code cache, which costs more memory than it saves.
//
// Start-up itself leaves garbage (the modules' parsing and set-up) that V8 would only give back
// to the system 10-20 s later, when its memory reducer notices the idle heap; one full collection
// just after start-up gives it back at once (bench/queue.ts reads RSS 500 ms after start).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

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

/** Called once the daemon has started: one full collection, unless a build has already arrived. */
export function collectStartupGarbage(): void {
  if (!small) return;
  // `gc` is only given to contexts made after the flag is set; the flag itself changes nothing else.
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  setImmediate(() => small && gc()).unref();
}
