// What a section of a configuration file declares: its keys, their kinds, defaults and checks,
// and the sections inside it. Plain data: worker.toml's schema and each driver's driver.toml
// section (internal/driver/*/section.ts) are written in it; internal/config applies it to TOML.

export type KeySpec =
  | { kind: "string"; required?: boolean; default?: string; oneOf?: readonly string[]; caseInsensitive?: boolean; secret?: boolean; check?: (v: string) => string | undefined; doc: string }
  | { kind: "integer"; required?: boolean; default?: number; min?: number; max?: number; doc: string }
  | { kind: "number"; required?: boolean; default?: number; min?: number; check?: (v: number) => string | undefined; doc: string }
  | { kind: "boolean"; default?: boolean; doc: string }
  | { kind: "duration"; required?: boolean; default?: string; min?: number; integerSeconds?: boolean; doc: string }
  /** A key of Djinn's files that does nothing in this worker: accepted whatever its value, with one warning saying why. */
  | { kind: "ignored"; why: string; doc: string };

export interface SectionSpec {
  keys: Record<string, KeySpec>;
  sections?: Record<string, SectionSpec>;
  /** Arrays of tables (`[[name]]`), each table checked against its spec; errors name `name[i].key`. */
  tables?: Record<string, SectionSpec>;
  doc?: string;
}
