// The TOML parser, loaded when a file is first parsed: `run` without a driver file, `--help` and
// `-version` read none, and would otherwise pay its load at start.
import type TOML = require("@iarna/toml");

export function parseToml(text: string): TOML.JsonMap {
  const toml = require("@iarna/toml") as typeof TOML;
  return toml.parse(text);
}
