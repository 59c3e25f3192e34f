import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rackNamespaceName } from '../../lab/netns.js';
import { buildQemuArgs } from '../../lab/qemu.js';

test('rack namespace names carry the test run (the sweep finds a run\'s leftovers by it)', () => {
  assert.equal(rackNamespaceName('bmts-test-run-123-abcdef', 42), 'bmts-123-abcdef-42');
  assert.match(rackNamespaceName(undefined, 42), /^bmts-42-[a-z0-9]+$/);
  assert.match(rackNamespaceName('bmts-test-run-1;rm -rf', 42), /^bmts-42-/);
});

test('QEMU on a TAP: no user network, no guestfwd; OVMF as two pflash drives', () => {
  const a = buildQemuArgs({ boot: 'network', tap: 'tap0', mac: '52:54:00:00:00:01', firmware: 'uefi', uefiVars: '/tmp/v.fd' }, '/tmp/s.log');
  const netdev = a[a.indexOf('-netdev') + 1];
  assert.equal(netdev, 'tap,id=n0,ifname=tap0,script=no,downscript=no');
  assert.ok(a.includes('if=pflash,format=raw,unit=1,file=/tmp/v.fd'));
  assert.ok(a.some((x) => /^if=pflash,format=raw,unit=0,readonly=on,file=\/usr\/share\/OVMF\/OVMF_CODE/.test(x)));
  assert.throws(() => buildQemuArgs({ tap: 'tap0', guestfwd: [{ guestPort: 1 }] }, '/tmp/s.log'), /user network/);
  assert.throws(() => buildQemuArgs({ tap: 'tap0;x' }, '/tmp/s.log'), /bad TAP/);
  assert.throws(() => buildQemuArgs({ firmware: 'uefi' }, '/tmp/s.log'), /uefiVars/);
});
