/**
 * Point reads asked for close together, answered by one statement. A conductor serving many agents gets their
 * lookups in bursts; on PostgreSQL each statement is a round trip whose cost (a write to the socket, a wake-up of
 * the server backend, a reply to parse, the row description's field parsers built again) is much larger than the
 * row itself, so N lookups that arrive together share one. A batch closes at the end of the event-loop turn that
 * delivered its first request (setImmediate, after the poll phase), and while one batch is in flight the next one
 * gathers: under load the batches grow instead of the round trips multiplying.
 *
 * Consistency is the unbatched one: a batch's statement is sent after every request in it arrived, and under READ
 * COMMITTED it sees every commit acknowledged before it started, so a read never misses a write that its client
 * (or any other) could have seen acknowledged before asking.
 */
export class ReadBatch<K, V> {
  private pending: { key: K; resolve: (v: V | undefined) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;
  private inFlight = false;

  /** `run` answers keys in order (undefined: not found); it must not share mutable objects between answers. */
  constructor(private readonly run: (keys: readonly K[]) => Promise<(V | undefined)[]>) {}

  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      this.pending.push({ key, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.inFlight = true;
    const done = (): void => {
      this.inFlight = false;
      this.schedule();
    };
    this.run(batch.map((b) => b.key)).then(
      (values) => { done(); batch.forEach((b, i) => { b.resolve(values[i]); }); },
      (e: unknown) => { done(); for (const b of batch) b.reject(e); },
    );
  }
}
