// `run` on a terminal: Ctrl-C kills the build as a kill from the queue would (its jobs end, the
// summary is printed); a second Ctrl-C quits at once.

/** A signal aborted by the first SIGINT or SIGTERM; the second one exits with 130. */
export function killOnSignals(): AbortSignal {
  const abort = new AbortController();
  let interrupted = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++interrupted > 1) process.exit(130);
    process.stderr.write(`\n${sig}: killing the build (again to quit at once)\n`);
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return abort.signal;
}
