// A bounded ring of ready Server-Sent Events for one build: its reader renders each new output
// row once and pushes the event's bytes here, and every viewer of the build writes from the same
// bytes. The ring keeps the newest events up to a size. Before a push would drop events a viewer
// still needs, the reader waits for it a while (backpressure: a burst of output does not outrun
// viewers that are merely busy); a viewer still behind then is let go, catches up from the
// database on its own, and joins again (RingCursor says when). The buffers of dropped events are
// used again once no viewer writes them: a buffer that outlives a few collections is freed only
// at a full one, and without reuse the web process would hold tens of MiB of dropped events.
export type RingKind = "output" | "status" | "end" | "ping";

export interface RingEvent {
  /** Position in the ring's sequence: 0, 1, 2, ... */
  seq: number;
  kind: RingKind;
  /** The output row an output or end event is at (the reader's cursor for the others). */
  row: number;
  /** The event as written to every viewer. */
  bytes: Buffer;
  /** Writes of it that are not yet done (EventRing.writing, written). */
  writes?: number;
  /** Dropped from the ring while written: its buffer is used again when the writes are done. */
  dropped?: boolean;
}

/** Events smaller than this get a buffer of their own: reuse is for the large ones that make up the ring. */
const REUSE_FROM = 4096;
/** Buffers are made in steps of this, so that one can hold the next event of about its size. */
const STEP = 4096;

export class EventRing {
  private readonly events: RingEvent[] = [];
  private held = 0;
  private next = 0;
  private floor: number;
  private latest?: RingEvent;
  private over = false;
  private readonly waiting = new Set<() => void>();
  /** The cursors reading from the ring now (not those behind it). */
  private readonly readers = new Set<RingCursor>();
  /** While the reader waits for room: readers at or before `need` still need an event a push would drop. */
  private pacing?: { need: number; done: () => void };
  /** Buffers of dropped events that no viewer writes, ready for new events; and the buffers the ring made. */
  private readonly spare: Buffer[] = [];
  private spareBytes = 0;
  private readonly made = new WeakSet<object>();

  /** `start`: the output row after which the reader begins; older rows were never in the ring. */
  constructor(
    start: number,
    readonly maxBytes: number,
    readonly maxEvents = 4096,
  ) {
    this.floor = start;
  }

  /** Every output row after this one that the reader has read is held: a viewer at or past it can join. */
  get base(): number {
    return this.floor;
  }

  get firstSeq(): number {
    return this.events[0]?.seq ?? this.next;
  }

  get nextSeq(): number {
    return this.next;
  }

  /** The newest status event, which a viewer gets first when it joins. */
  get status(): RingEvent | undefined {
    return this.latest;
  }

  /** No event will follow (the build ended, or its reader stopped). */
  get closed(): boolean {
    return this.over;
  }

  get bytes(): number {
    return this.held;
  }

  push(kind: RingKind, row: number, bytes: Buffer): void {
    if (this.over) return;
    const e: RingEvent = { seq: this.next++, kind, row, bytes };
    this.events.push(e);
    this.held += bytes.length;
    if (kind === "status") this.latest = e;
    // The oldest events go first; the newest is always kept, however large.
    while ((this.held > this.maxBytes || this.events.length > this.maxEvents) && this.events.length > 1) {
      const old = this.events.shift()!;
      this.held -= old.bytes.length;
      if (old.kind === "output") this.floor = old.row;
      if (old.writes) old.dropped = true;
      else this.reuse(old);
    }
    this.wake();
  }

  close(): void {
    this.over = true;
    this.wake();
  }

  /** `text` as the bytes of an event, in the buffer of a dropped one when there is one to spare. */
  encode(text: string): Buffer {
    const n = Buffer.byteLength(text);
    if (n < REUSE_FROM) return Buffer.from(text);
    const i = this.spare.findIndex((b) => b.length >= n && b.length < n + 4 * STEP);
    let store: Buffer;
    if (i >= 0) {
      store = this.spare.splice(i, 1)[0];
      this.spareBytes -= store.length;
    } else {
      store = Buffer.allocUnsafeSlow(Math.ceil(n / STEP) * STEP);
      this.made.add(store.buffer);
    }
    store.write(text, 0, "utf8");
    return store.subarray(0, n);
  }

  /** A viewer starts writing `e`: its buffer is not used again before `written`. */
  writing(e: RingEvent): void {
    e.writes = (e.writes ?? 0) + 1;
  }

  /** A write of `e` is done (or failed): nothing reads its buffer for it any more. */
  written(e: RingEvent): void {
    if (--e.writes! === 0 && e.dropped) this.reuse(e);
  }

  /** A dropped event that nobody writes: its buffer, if the ring made it, is kept for a new event (a few MiB at most). */
  private reuse(e: RingEvent): void {
    // The newest status may still be handed to a viewer that joins.
    if (e === this.latest || !this.made.has(e.bytes.buffer)) return;
    const store = Buffer.from(e.bytes.buffer);
    if (this.spare.length > 0 && this.spareBytes + store.length > this.maxBytes / 4) return;
    this.spare.push(store);
    this.spareBytes += store.length;
    // The event is gone from the ring; nothing may read it through this object again.
    e.bytes = Buffer.alloc(0);
  }

  /**
   * Resolves when a push of `bytes` drops nothing a reading cursor still needs, or after `ms`;
   * the cursors still needing a dropped event then are let go (they are behind).
   */
  async room(bytes: number, ms: number): Promise<void> {
    if (this.over) return;
    let k = 0;
    for (let freed = 0; k < this.events.length - 1 && (this.held + bytes - freed > this.maxBytes || this.events.length + 1 - k > this.maxEvents); k++) freed += this.events[k].bytes.length;
    if (k === 0) return;
    const need = this.events[k - 1].seq;
    if (!this.needed(need)) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.pacing = { need, done: resolve };
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.pacing = undefined;
    for (const r of this.readers) if (r.waitingFor <= need) this.readers.delete(r);
  }

  /** A cursor starts reading at its position (RingCursor.join). */
  attach(c: RingCursor): void {
    this.readers.add(c);
  }

  /** A cursor stops reading: it is behind, or its viewer left. */
  detach(c: RingCursor): void {
    if (this.readers.delete(c)) this.recheck();
  }

  /** A reading cursor moved on from `from`: looked at only when it was one the reader waits for. */
  moved(c: RingCursor, from: number): void {
    if (this.pacing && from <= this.pacing.need && c.waitingFor > this.pacing.need) this.recheck();
  }

  private needed(need: number): boolean {
    for (const r of this.readers) if (r.waitingFor <= need) return true;
    return false;
  }

  private recheck(): void {
    if (this.pacing && !this.needed(this.pacing.need)) this.pacing.done();
  }

  /** The event at `seq`: undefined when not pushed yet, "gone" when already dropped. */
  at(seq: number): RingEvent | "gone" | undefined {
    const i = seq - this.firstSeq;
    if (i < 0) return "gone";
    return this.events[i];
  }

  /** Resolves once event `seq` is pushed, the ring closes, or `signal` aborts. */
  changed(seq: number, signal: AbortSignal): Promise<void> {
    if (seq < this.next || this.over || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.waiting.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.waiting.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  private wake(): void {
    for (const done of [...this.waiting]) done();
  }
}

/**
 * One viewer's place in a ring. It has every output row up to `row`; `next` gives what to write
 * next: each later output row once and in order, the newest status first on joining, later
 * statuses, pings and the end as they come. "behind" means rows after `row` were dropped: they
 * are for the database to give (advance `row` while writing them), then `join` again.
 */
export class RingCursor {
  private seq = 0;
  private joined = 0;
  private statusDue?: RingEvent;

  constructor(
    private readonly ring: EventRing,
    public row: number,
  ) {
    this.join();
  }

  /** Starts over at the ring's oldest event; statuses already passed are replaced by the newest. */
  join(): void {
    this.ring.detach(this);
    this.seq = this.ring.firstSeq;
    this.joined = this.ring.nextSeq;
    this.statusDue = this.ring.status;
    this.ring.attach(this);
  }

  /** The viewer left: the ring's reader no longer waits for it. */
  close(): void {
    this.ring.detach(this);
  }

  /** The sequence number this cursor waits for (EventRing.changed). */
  get waitingFor(): number {
    return this.seq;
  }

  next(): RingEvent | "behind" | undefined {
    const from = this.seq;
    const e = this.step();
    if (this.seq !== from) this.ring.moved(this, from);
    return e;
  }

  private step(): RingEvent | "behind" | undefined {
    if (this.row < this.ring.base) {
      this.ring.detach(this);
      return "behind";
    }
    if (this.statusDue) {
      const s = this.statusDue;
      this.statusDue = undefined;
      return s;
    }
    for (;;) {
      const e = this.ring.at(this.seq);
      // Only events this viewer already has, or statuses, were dropped: the rows it needs are all held.
      if (e === "gone") {
        this.join();
        return this.step();
      }
      if (!e) return undefined;
      this.seq++;
      if (e.kind === "output") {
        if (e.row <= this.row) continue;
        this.row = e.row;
        return e;
      }
      if (e.kind === "end") return e;
      if (e.seq < this.joined) continue;
      return e;
    }
  }
}
