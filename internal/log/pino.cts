// pino, loaded when the first logger is made rather than when its module is: `run` makes its
// logger at its first line (deferredLogger), and most runs write none. pino and what it
// loads cost some 10 ms of every start.
import type Pino = require("pino");

export function loadPino(): typeof Pino {
  return require("pino") as typeof Pino;
}
