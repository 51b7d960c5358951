// A tar stream of one file, made by hand so a test controls every byte the cache store reads.
import { Readable } from "node:stream";

/** A tar stream whose single file holds `bytes`, fed in small pieces with pauses, as a slow environment gives one. */
export function tarOf(bytes: Buffer, name = "f"): Readable {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(bytes.length.toString(8).padStart(11, "0") + "\0", 124);
  header.write("00000000000\0", 136);
  header.write("0", 156);
  header.write("ustar\0", 257);
  header.write("00", 263);
  header.fill(" ", 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  const pad = Buffer.alloc((512 - (bytes.length % 512)) % 512);
  const whole = Buffer.concat([header, bytes, pad, Buffer.alloc(1024)]);
  return Readable.from(
    (async function* () {
      for (let at = 0; at < whole.length; at += 64 * 1024) {
        await new Promise((r) => setImmediate(r));
        yield whole.subarray(at, at + 64 * 1024);
      }
    })(),
  );
}
