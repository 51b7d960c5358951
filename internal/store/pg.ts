// The pg library, loaded after ./pg-navigator.ts (see there why); every module that uses pg's
// values, not only its types, imports it from here.
import "./pg-navigator.js";
import pg from "pg";

export default pg;
