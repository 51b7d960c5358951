// Every driver of the catalogue, by name; each module is imported when a build or check first needs it.
import { CATALOGUE } from "./catalogue.js";
import { registerDriverModule } from "./driver.js";

for (const driver of CATALOGUE) registerDriverModule(driver.section.name, driver.load);
