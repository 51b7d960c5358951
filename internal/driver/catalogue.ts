// Every driver this worker has, one line each, in the order `check` and messages list them.
// A driver is its folder (<folder>/section.ts: its name and driver.toml section, which its engine
// reads too; <folder>/entry.ts: its queue rule and the loader of its engine) and its line here.
// config, the manifest, queue naming and `check` read this list.
import type { DriverDeclaration, DriverSection } from "./section.js";
import { docker } from "./docker/entry.js";
import { qemu } from "./qemu/entry.js";
import { ssh } from "./ssh/entry.js";
import { os } from "./os/entry.js";

export const CATALOGUE = [docker, qemu, ssh, os] as const;

type Declared = (typeof CATALOGUE)[number];
type SettingsOf<D> = D extends DriverDeclaration<string, infer S> ? S : never;

/** driver.toml as read: the file, its warnings, and the settings of each driver whose section is present. */
export type DriverConfig = { file?: string; warnings: string[] } & { [D in Declared as D["section"]["name"]]?: SettingsOf<D> };

/** The catalogue's lines as one type, for what reads every line alike. */
export const DECLARATIONS: readonly DriverDeclaration<string, unknown>[] = CATALOGUE;

/** The manifest's driver types (driver.type), which are the section names of driver.toml. */
export const DRIVER_TYPES: readonly string[] = CATALOGUE.map((d) => d.section.name);

/** The catalogue's line for the driver named `name`, if there is one. */
export function declaration(name: string): DriverDeclaration<string, unknown> | undefined {
  return DECLARATIONS.find((d) => d.section.name === name);
}

/** Every driver's driver.toml section, by name. */
export function driverSections(): DriverSection<string, unknown>[] {
  return DECLARATIONS.map((d) => d.section);
}

/** The lines of the drivers whose section driver.toml has. */
export function configuredDeclarations(drivers: DriverConfig): DriverDeclaration<string, unknown>[] {
  return DECLARATIONS.filter((d) => (drivers as Record<string, unknown>)[d.section.name]);
}

/** The drivers with a section in driver.toml whose engine sweeps the host (DriverDeclaration.sweeps): the engines a worker loads at start-up. */
export function sweepingDrivers(drivers: DriverConfig): string[] {
  return configuredDeclarations(drivers)
    .filter((d) => d.sweeps)
    .map((d) => d.section.name);
}
