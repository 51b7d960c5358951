// The Engine's archive of a path is named from the path's base name (`GET .../archive?path=/w/a/b`
// gives `b/...`); a cache wants names relative to the workspace (`a/b/...`). TarPrefixer puts the
// parent in front of every name (and of hard links' targets; a symlink's target is left as it is)
// as the archive passes, header by header: the data blocks are never copied or re-packed. A name
// that no longer fits its ustar field goes into a pax header, as tar does.
import { BLOCK, paxMember, setChecksum, setField, TarMembers, type TarMember } from "../../stream/tar-members.js";

/** Header blocks of directories `names` (each ending in "/"), for an archive's start. */
export function directoryHeaders(names: string[]): Buffer[] {
  return names.map((name) => {
    const block = Buffer.alloc(BLOCK);
    const long = !setField(block, 0, 100, name);
    block.write("0000755\0", 100);
    block.write("0000000\0", 108);
    block.write("0000000\0", 116);
    block.write("00000000000\0", 124);
    block.write(`${Math.floor(Date.now() / 1000).toString(8).padStart(11, "0")}\0`, 136);
    block.write("5", 156);
    block.write("ustar\0", 257);
    block.write("00", 263);
    setChecksum(block);
    return long ? Buffer.concat([paxMember(new Map([["path", name]])), block]) : block;
  });
}

/**
 * Prefixes every member's name with `parent/` (none when parent is ""). The archive's two end blocks are not passed on, so
 * several archives can follow one another; whoever joins them ends the whole with two zero blocks.
 */
export class TarPrefixer extends TarMembers {
  constructor(private readonly parent: string) {
    super(false);
  }

  protected member(m: TarMember): Buffer[] {
    if (!this.parent) return [...m.meta, m.block];
    const pax = new Map(m.pax ?? []);
    const meta: Buffer[] = [];
    const block = m.block;
    const name = `${this.parent}/${m.paxPath ?? m.longName ?? m.ustarName}`;
    // The ustar prefix field is folded into the name, which then goes in the name field or pax.
    block.fill(0, 345, 500);
    if (m.paxPath !== undefined || m.longName !== undefined || !setField(block, 0, 100, name)) {
      pax.set("path", name);
      setField(block, 0, 100, name.slice(-100).replace(/^[^/]*\//, ""));
    }
    if (m.type === "1") {
      const link = `${this.parent}/${m.paxLinkpath ?? m.longLink ?? m.ustarLink}`;
      if (m.paxLinkpath !== undefined || m.longLink !== undefined || !setField(block, 157, 100, link)) {
        pax.set("linkpath", link);
        setField(block, 157, 100, "");
      }
    } else if (m.longLink !== undefined && m.paxLinkpath === undefined) {
      // A symlink's long target, kept as it was (in pax, as its GNU long-link header is dropped).
      pax.set("linkpath", m.longLink);
    }
    if (pax.size > 0) meta.push(paxMember(pax));
    setChecksum(block);
    return [...meta, block];
  }
}
