/**
 * The V8 flags the conductor process runs with (`npm run conductor` passes them; so do the test fixtures that
 * start it as a child and the fleet bench). Measured with 10,000 nodes enrolled (`npm run bench -- fleet`): the
 * live heap is ~24 MiB, yet with V8's defaults RSS sat at 130-180 MiB, because
 * - the young generation grows to 2 x 16 MiB semi-spaces under API load and stays that big (~30 MiB resident);
 *   the conductor's garbage is per-request and short-lived, and 2 MiB semi-spaces scavenge it as well (no
 *   measurable CPU difference on creates, lists or lookups);
 * - the old generation is allowed to grow to up to 4x its live size between full collections; 20% headroom keeps
 *   the promoted garbage of a burst (10,000 creates) from settling in as resident pages.
 * Both are start-up flags (the heap is configured before any of our code runs), hence a list for launchers.
 */
export const CONDUCTOR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=20'];
