/** The agent's added inventory pieces: BMC IPv6 from `ipmitool lan6 print`, USB devices, LLDP from lldpcli. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getUsbDevices, lldpFromLldpcli, parseLan6, usbFromLshw } from '../../hardware-managers/generic/inventory-extra.js';
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
