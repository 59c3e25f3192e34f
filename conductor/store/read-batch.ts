/**
 * Point reads asked for in one turn of the event loop, answered by one statement. A conductor serving many agents
 * gets their lookups in bursts; on PostgreSQL each statement is a round trip whose cost (a write to the socket, a
 * wake-up of the server backend, a reply to parse, the row description's field parsers built again) is much larger
 * than the row itself, so N lookups that arrive together share one.
 *
 * Consistency is the unbatched one: the statement is sent after every request in the batch arrived (the batch
 * closes at setImmediate, after the poll phase that delivered them), and under READ COMMITTED it sees every
 * commit acknowledged before it started, so a read never misses a write that its client could have seen
 * acknowledged before asking.
 */
export class ReadBatch<K, V> {
  private pending: { key: K; resolve: (v: V | undefined) => void; reject: (e: unknown) => void }[] = [];

  /** `run` answers keys in order (undefined: not found); it must not share mutable objects between answers. */
  constructor(private readonly run: (keys: readonly K[]) => Promise<(V | undefined)[]>) {}

  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      if (this.pending.push({ key, resolve, reject }) === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.run(batch.map((b) => b.key)).then(
      (values) => { batch.forEach((b, i) => { b.resolve(values[i]); }); },
      (e: unknown) => { for (const b of batch) b.reject(e); },
    );
  }
}
