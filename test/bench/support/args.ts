/**
 * Bench arguments: `--name value` flags, with the older positional form (`image 3 2048`) still read where a bench
 * documents one. A value that is not a positive number is refused before anything is built.
 */
export function numArg(args: readonly string[], flag: string, position: number | null, dflt: number): number {
  const i = args.indexOf(flag);
  const positional = args.filter((a, k) => !a.startsWith('--') && !(k > 0 && args[k - 1]!.startsWith('--')));
  const raw = i >= 0 ? args[i + 1] : position !== null ? positional[position] : undefined;
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} needs a positive number, got ${raw}`);
  return v;
}

/** A size in MiB that dd's bs=4M divides: the baselines write whole 4 MiB blocks. */
export function sizeMiBArg(args: readonly string[], flag: string, position: number | null, dflt: number): number {
  const v = numArg(args, flag, position, dflt);
  if (!Number.isInteger(v) || v % 4 !== 0) throw new Error(`${flag} must be a multiple of 4 (MiB), got ${v}`);
  return v;
}
