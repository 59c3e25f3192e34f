/**
 * `npm run demo` arguments, parsed without side effects (scripts/demo.ts prints the error or the usage and exits):
 * a refused argument is a message, never a half-read configuration.
 */

export interface DemoArgs {
  keep: boolean;
  /** QEMU's user-mode network instead of the rack (machines without network namespaces). */
  userNet: boolean;
  apiPort: number | undefined;
  ipmi: 'ipmitool' | 'ipmi-native';
  nodes: number;
  /** With nodes > 1: QEMU nodes (an ipmi_sim BMC each, real boots) instead of virtual nodes. */
  qemu: boolean;
  /** Guest memory of each QEMU node, MiB. */
  memoryMiB: number;
}

export const DEMO_USAGE = 'usage: npm run demo [-- --keep] [--api-port N] [--ipmi ipmitool|ipmi-native] [--user-net] ' +
  '[--nodes N [--qemu [--memory-mib M]]]';

/** At most this many QEMU nodes: each is a TCG VM keeping a core busy while it boots. */
export const MAX_QEMU_NODES = 8;
/** Default guest memory of a QEMU node: the 51 MiB ramdisk unpacks and runs the agent in this. */
export const DEFAULT_QEMU_MEMORY_MIB = 512;
const MIN_QEMU_MEMORY_MIB = 256;

export type ParsedDemoArgs = { ok: true; args: DemoArgs } | { ok: false; help: true } | { ok: false; help: false; error: string };

export function parseDemoArgs(argv: readonly string[]): ParsedDemoArgs {
  // ipmi-native by default: the same IPMI the BMC sees, without a process and a 1 s command gap per call (the
  // demo's enroll to instance: 50 s, against 66 s with ipmitool, whose power actions take ~5 s each).
  const args: DemoArgs = { keep: false, userNet: false, apiPort: undefined, ipmi: 'ipmi-native', nodes: 1, qemu: false,
    memoryMiB: DEFAULT_QEMU_MEMORY_MIB };
  let memorySet = false;
  let ipmiSet = false;
  const fail = (error: string): ParsedDemoArgs => ({ ok: false, help: false, error });
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--keep') args.keep = true;
    else if (a === '--api-port') {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1 || v > 65535) return fail('--api-port needs a port number (1-65535)');
      args.apiPort = v;
    } else if (a === '--user-net') args.userNet = true;
    else if (a === '--qemu') args.qemu = true;
    else if (a === '--nodes') {
      args.nodes = Number(argv[++i]);
      if (!Number.isInteger(args.nodes) || args.nodes < 1 || args.nodes > 200) return fail('--nodes needs a whole number from 1 to 200');
    } else if (a === '--memory-mib') {
      args.memoryMiB = Number(argv[++i]);
      memorySet = true;
      if (!Number.isInteger(args.memoryMiB) || args.memoryMiB < MIN_QEMU_MEMORY_MIB || args.memoryMiB > 4096) {
        return fail(`--memory-mib needs a whole number from ${MIN_QEMU_MEMORY_MIB} to 4096`);
      }
    } else if (a === '--ipmi') {
      const v = argv[++i];
      if (v !== 'ipmitool' && v !== 'ipmi-native') return fail('--ipmi takes ipmitool or ipmi-native');
      args.ipmi = v;
      ipmiSet = true;
    } else if (a === '--help' || a === '-h') {
      return { ok: false, help: true };
    } else {
      return fail(`unknown argument: ${a}`);
    }
  }
  if (args.qemu && args.nodes < 2) return fail('--qemu goes with --nodes N (N >= 2); one QEMU node is the plain demo');
  if (args.qemu && args.nodes > MAX_QEMU_NODES) return fail(`--qemu runs at most ${MAX_QEMU_NODES} nodes (each is a TCG VM)`);
  if (memorySet && !args.qemu) return fail('--memory-mib applies to --nodes N --qemu only');
  if (args.nodes > 1 && !args.qemu && (args.userNet || ipmiSet)) {
    return fail('--user-net and --ipmi apply to QEMU nodes (the plain demo or --nodes N --qemu), not to virtual nodes');
  }
  return { ok: true, args };
}
