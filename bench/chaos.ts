// Kill -9 chaos, full size: 3 workers on one queue (os driver), one killed every 3 s and replaced,
// 600 builds of 0.5–2.5 s. Prints lost / stuck / re-run / left-behind counts.
// Usage: node build/bench/chaos.js [--builds N] [--workers N] [--kill-every SECONDS] [--lease SECONDS]
import { startPostgres, startRedis } from "../test/helpers/services.js";
import { chaosReport, chaosRun } from "../test/helpers/chaos.js";
import { numberArg } from "./lib/args.js";

const builds = numberArg("builds", 600);
const workers = numberArg("workers", 3);
const killEvery = numberArg("kill-every", 3);
const lease = numberArg("lease", 5);

async function main(): Promise<void> {
  const [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
  try {
    const r = await chaosRun(redis, postgres, {
      builds,
      workers,
      killEveryMs: killEvery * 1000,
      minJobMs: 500,
      maxJobMs: 2500,
      parallelism: 2,
      lease: `${lease}s`,
      leaseMs: lease * 1000,
      settleMs: 3 * lease * 1000 + 5000,
      timeoutMs: 30 * 60_000,
      progress: (line) => console.error(line),
    });
    console.log(`kill -9 chaos: ${workers} workers × parallelism 2, one killed every ${killEvery} s, lease ${lease} s`);
    console.log(chaosReport(r));
  } finally {
    await Promise.all([redis.stop(), postgres.stop()]);
  }
}

await main();
