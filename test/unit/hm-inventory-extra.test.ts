/** The agent's added inventory pieces: USB devices, LLDP from lldpcli or a frame lldp-listen heard. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { frameFromListenerHex, getUsbDevices, lldpFromLldpcli, lldpTlvsFromFrame, usbFromLshw } from '../../hardware-managers/generic/inventory-extra.js';
import { parseLldp } from '../../conductor/inspection/lldp.js';

test('USB devices: lshw JSON walked; sysfs fallback', async (t) => {
  assert.deepEqual(usbFromLshw([{ id: 'usbhost', class: 'bus', handle: 'USB:1:1', product: 'xHCI Host Controller', vendor: 'Linux',
    children: [{ id: 'usb', class: 'input', handle: 'USB:1:2', product: 'QEMU USB Tablet', vendor: 'QEMU' }] }]),
  [{ product: 'xHCI Host Controller', vendor: 'Linux', handle: 'USB:1:1' }, { product: 'QEMU USB Tablet', vendor: 'QEMU', handle: 'USB:1:2' }]);
  const root = await mkdtemp(join(tmpdir(), 'bmts-usb-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const d = join(root, 'bus/usb/devices/1-1');
  await mkdir(d, { recursive: true });
  for (const [k, v] of [['idVendor', '0627'], ['idProduct', '0001'], ['product', 'QEMU USB Tablet'], ['busnum', '1'], ['devnum', '2']]) {
    await writeFile(join(d, k as string), `${v}\n`);
  }
  await mkdir(join(root, 'bus/usb/devices/1-0:1.0'), { recursive: true }); // an interface, not a device
  assert.deepEqual(await getUsbDevices(root), [{ product: 'QEMU USB Tablet', vendor: '0627', handle: 'USB:1:2' }]);
});

test("lldpcli neighbours become IPA's lldp_raw TLVs, which the conductor reads back", () => {
  const raw = lldpFromLldpcli({ lldp: { interface: { eth0: { via: 'LLDP',
    chassis: { 'leaf-1': { id: { type: 'mac', value: '00:11:22:33:44:55' } } },
    port: { id: { type: 'ifname', value: 'swp7' }, descr: 'swp7' } } } } });
  assert.deepEqual(Object.keys(raw), ['eth0']);
  assert.deepEqual(parseLldp(raw.eth0), { switch_id: '00:11:22:33:44:55', port_id: 'swp7', switch_info: 'leaf-1' });
  assert.deepEqual(lldpFromLldpcli({}), {});
});

// Debian's lldpd 1.0.16 (hostname rack-switch-1, portidsubtype local Ethernet1/7) as lldp-listen prints it
// (ramdisk-build/lldp-listen.c: the whole frame, Ethernet header included, as one hex line).
const LLDPD_FRAME = [
  '0180c200000e020000aabbcc88cc020704020000aabbcc040c0745746865726e6574312f37060200040a0d7261636b2d',
  '7377697463682d310c5644656269616e20474e552f4c696e75782031322028626f6f6b776f726d29204c696e75782036',
  '2e31382e34342d66632d763132353220233120534d5020505245454d50545f44594e414d4943204030207838365f3634',
  '0e04009c008010181102fe800000000000002cdbcafffe23523b02000000050008036c6c62fe0900120f030100000000',
  'fe0900120f0100800000360000',
].join('');

test("a captured LLDP frame becomes IPA's raw TLV list (End excluded), which the conductor reads back", () => {
  const frame = frameFromListenerHex(`${LLDPD_FRAME}\n`);
  assert.ok(frame);
  assert.equal(frame.length, 14 + 191, 'the Ethernet header and the 191-byte LLDPDU');
  const tlvs = lldpTlvsFromFrame(frame);
  assert.ok(tlvs);
  assert.deepEqual(tlvs.slice(0, 3), [[1, '040200' + '00aabbcc'], [2, Buffer.from('\x07Ethernet1/7', 'latin1').toString('hex')], [3, '0004']]);
  assert.equal(tlvs.some(([t]) => t === 0), false);
  assert.deepEqual(parseLldp(tlvs), { switch_id: '02:00:00:aa:bb:cc', port_id: 'Ethernet1/7', switch_info: 'rack-switch-1' });
  // Not LLDP (an IPv4 frame); nothing printed, a diagnostic, or a truncated line are no frame at all.
  assert.equal(lldpTlvsFromFrame(Buffer.from('ffffffffffff0200000000010800450000', 'hex')), null);
  for (const out of ['', 'lldp-listen: no LLDP frame on eth1 within 20 s\n', '0180c200000e02\n', `${LLDPD_FRAME.slice(0, -1)}\n`]) {
    assert.equal(frameFromListenerHex(out), null, JSON.stringify(out.slice(0, 40)));
  }
});
