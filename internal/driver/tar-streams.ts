// What the drivers share about feeding a tar stream to a `tar -x` that reads it.

/**
 * A write refused because the reading tar left: it may, once it has read the end of the archive,
 * before the padding after it. No failure when tar then exits well.
 */
export function endedEarly(err: NodeJS.ErrnoException): boolean {
  return err.code === "EPIPE" || err.code === "ERR_STREAM_PREMATURE_CLOSE";
}
