/** `npm run demo` arguments (scripts/demo/args.ts): the QEMU fleet flags and what is refused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_QEMU_MEMORY_MIB, MAX_QEMU_NODES, parseDemoArgs } from '../../scripts/demo/args.js';

const args = (argv: string[]) => {
  const r = parseDemoArgs(argv);
  assert.ok(r.ok, `refused: ${JSON.stringify(r)}`);
  return r.args;
};
const error = (argv: string[]): string => {
  const r = parseDemoArgs(argv);
  assert.ok(!r.ok && !r.help, `accepted: ${JSON.stringify(argv)}`);
  return r.error;
};

test('demo args: defaults are the one-node QEMU demo', () => {
  assert.deepEqual(args([]), { keep: false, userNet: false, apiPort: undefined, ipmi: 'ipmi-native', nodes: 1, qemu: false,
    memoryMiB: DEFAULT_QEMU_MEMORY_MIB });
  assert.equal(args(['--ipmi', 'ipmitool']).ipmi, 'ipmitool');
});

test('demo args: --nodes 3 --qemu selects the QEMU fleet, with the other QEMU flags', () => {
  const a = args(['--nodes', '3', '--qemu', '--memory-mib', '384', '--user-net', '--ipmi', 'ipmi-native', '--keep']);
  assert.equal(a.nodes, 3);
  assert.equal(a.qemu, true);
  assert.equal(a.memoryMiB, 384);
  assert.equal(a.userNet, true);
  assert.equal(a.ipmi, 'ipmi-native');
  assert.equal(a.keep, true);
  assert.equal(args(['--nodes', '20']).qemu, false, 'plain --nodes stays virtual nodes');
});

test('demo args: refusals name the problem', () => {
  assert.match(error(['--qemu']), /--nodes N/);
  assert.match(error(['--nodes', String(MAX_QEMU_NODES + 1), '--qemu']), new RegExp(`at most ${MAX_QEMU_NODES}`));
  assert.match(error(['--nodes', '3', '--qemu', '--memory-mib', '64']), /--memory-mib needs/);
  assert.match(error(['--nodes', '3', '--memory-mib', '512']), /--qemu only/);
  assert.match(error(['--nodes', '3', '--user-net']), /not to virtual nodes/);
  assert.match(error(['--nodes', '3', '--ipmi', 'ipmitool']), /not to virtual nodes/);
  assert.match(error(['--nodes', 'x']), /whole number/);
  assert.match(error(['--api-port', '70000']), /port number/);
  assert.match(error(['--ipmi', 'redfish']), /ipmitool or ipmi-native/);
  assert.match(error(['--bogus']), /unknown argument: --bogus/);
  const h = parseDemoArgs(['--nodes', '3', '-h']);
  assert.ok(!h.ok && h.help);
});
