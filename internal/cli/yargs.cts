// yargs' CommonJS build: its help wraps at word boundaries (the ES module build cuts words in
// two). Required from a CommonJS module, so that a bundler carries it too.
import yargs = require("yargs/yargs");

export = yargs;
