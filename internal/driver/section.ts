// What a driver declares about itself, engine-free: its name, the queue it is served on, its
// driver.toml section and its lazy loader. ./catalogue.ts lists the declarations; config, the
// manifest, queue naming and `check` read them there.
import type { SectionSpec } from "../settings/spec.js";

/**
 * driver.toml as read: each configured driver's settings under its name. A driver reads its own
 * with its section's `settingsIn`; ./catalogue.ts has the fully typed form (DriverConfig).
 */
export interface DriverSettings {
  readonly file?: string;
  readonly warnings: string[];
  readonly [driver: string]: unknown;
}

/** A driver's section of driver.toml: the schema internal/config applies, and the typed settings it gives. */
export interface DriverSection<Name extends string, Settings> {
  /** The manifest's driver.type and the section's name in driver.toml. */
  readonly name: Name;
  /** The keys of [name], checked by internal/config (the only reader of TOML). */
  readonly spec: SectionSpec;
  /** The settings of a section that passed `spec` (durations in ms, defaults filled). */
  settings(values: Record<string, unknown>): Settings;
  /** The settings as `check` shows them, by driver.toml key. */
  shown(settings: Settings): Record<string, unknown>;
}

/** The settings of `section` in `config`, when its section is present. */
export function settingsIn<Settings>(section: DriverSection<string, Settings>, config: DriverSettings): Settings | undefined {
  return config[section.name] as Settings | undefined;
}

/** One line of the catalogue: a driver's section, its queue rule and the module with its engine. */
export interface DriverDeclaration<Name extends string, Settings> {
  readonly section: DriverSection<Name, Settings>;
  /** The queue name this host serves the driver on (qemu: qemu-<host arch>). */
  queue(): string;
  /** The key of the manifest's driver map this driver cannot do without (docker: image), if any. */
  readonly manifestRequires?: string;
  /** What is wrong with the manifest's driver map as this driver will read it (docker: an image the engine refuses): the key and why. */
  manifestProblem?(driver: Readonly<Record<string, string>>): { key: string; problem: string } | undefined;
  /** How the queue rule reads in docs and messages, e.g. "qemu-<host arch>". */
  readonly queueRule: string;
  /** Why `value`, a worker.toml `driver` that is not `queue()`, is a wrong spelling of this driver; undefined when it is not about this driver. */
  misnamed?(value: string): string | undefined;
  /**
   * Whether its engine sweeps this host for what dead workers left (DriverEntry.sweep): a worker
   * loads such an engine at start-up, every other one only when a build or check needs it.
   */
  readonly sweeps?: true;
  /** Imports the engine, which registers a driver named `section.name` (../driver.ts registerDriver); only when a build or check needs it. */
  load(): Promise<unknown>;
}
