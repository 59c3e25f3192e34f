/** The agent's added inventory pieces: BMC IPv6 from `ipmitool lan6 print`, USB devices, LLDP from lldpcli or a tcpdump capture. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { frameFromTcpdumpHex, getUsbDevices, lldpFromLldpcli, lldpTlvsFromFrame, parseLan6, usbFromLshw } from '../../hardware-managers/generic/inventory-extra.js';
import { parseLldp } from '../../conductor/inspection/lldp.js';

test('lan6 print: the first global address, not :: nor link-local', () => {
  const out = `IPv6/IPv4 Support:       ipv6_only
IPv6 Static Address 0:
    Enabled:            no
    Address:            ::/0
    Status:             disabled
IPv6 Dynamic Address 0:
    Source/Type:        SLAAC
    Address:            fe80::d294:66ff:fe00:aaff/64
    Status:             active
IPv6 Dynamic Address 1:
    Source/Type:        DHCPv6
    Address:            2001:db8::42/64
    Status:             active
`;
  assert.equal(parseLan6(out), '2001:db8::42');
  assert.equal(parseLan6('Address: ::/0\n'), null);
});

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

// Debian's lldpd 1.0.16 (hostname rack-switch-1, portidsubtype local Ethernet1/7) as `tcpdump -c 1 -nn -xx` printed it.
const LLDPD_CAPTURE = `13:34:04.977629 LLDP, length 191: rack-switch-1
\t0x0000:  0180 c200 000e 0200 00aa bbcc 88cc 0207
\t0x0010:  0402 0000 aabb cc04 0c07 4574 6865 726e
\t0x0020:  6574 312f 3706 0200 040a 0d72 6163 6b2d
\t0x0030:  7377 6974 6368 2d31 0c56 4465 6269 616e
\t0x0040:  2047 4e55 2f4c 696e 7578 2031 3220 2862
\t0x0050:  6f6f 6b77 6f72 6d29 204c 696e 7578 2036
\t0x0060:  2e31 382e 3434 2d66 632d 7631 3235 3220
\t0x0070:  2331 2053 4d50 2050 5245 454d 5054 5f44
\t0x0080:  594e 414d 4943 2040 3020 7838 365f 3634
\t0x0090:  0e04 009c 0080 1018 1102 fe80 0000 0000
\t0x00a0:  0000 2cdb caff fe23 523b 0200 0000 0500
\t0x00b0:  0803 6c6c 62fe 0900 120f 0301 0000 0000
\t0x00c0:  fe09 0012 0f01 0080 0000 3600 00
`;

test("a captured LLDP frame becomes IPA's raw TLV list (End excluded), which the conductor reads back", () => {
  const frame = frameFromTcpdumpHex(LLDPD_CAPTURE);
  assert.ok(frame);
  assert.equal(frame.length, 14 + 191, 'the Ethernet header and the 191-byte LLDPDU');
  const tlvs = lldpTlvsFromFrame(frame);
  assert.ok(tlvs);
  assert.deepEqual(tlvs.slice(0, 3), [[1, '040200' + '00aabbcc'], [2, Buffer.from('\x07Ethernet1/7', 'latin1').toString('hex')], [3, '0004']]);
  assert.equal(tlvs.some(([t]) => t === 0), false);
  assert.deepEqual(parseLldp(tlvs), { switch_id: '02:00:00:aa:bb:cc', port_id: 'Ethernet1/7', switch_info: 'rack-switch-1' });
  // Not LLDP (an IPv4 frame) and no hex lines at all.
  assert.equal(lldpTlvsFromFrame(Buffer.from('ffffffffffff0200000000010800450000', 'hex')), null);
  assert.equal(frameFromTcpdumpHex('tcpdump: listening on eth1\n'), null);
});
