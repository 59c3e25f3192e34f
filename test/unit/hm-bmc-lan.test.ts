/** In-band BMC addresses (hardware-managers/generic/bmc-lan.ts) from LAN configuration parameters, as a BMC answers them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytesFromHex, globalV6, readBmcLan, type LanParamReader } from '../../hardware-managers/generic/bmc-lan.js';

/** An address slot as the BMC sends it: set selector, enabled static source, 16 address bytes, prefix, status. */
const slot = (set: number, addr: string, prefix = 64): Buffer => {
  const [head = '', tail = ''] = addr.split('::');
  const part = (p: string): string[] => p.split(':').filter(Boolean);
  const full = [...part(head), ...Array(8 - part(head).length - part(tail).length).fill('0'), ...part(tail)];
  return Buffer.from([set, 0x80, ...Buffer.from(full.map((g) => g.padStart(4, '0')).join(''), 'hex'), prefix, 0]);
};

/** A BMC whose channel 1 is not a LAN channel and whose channel 2 is: parameters by `channel/param/set`. */
function bmc(params: Record<string, Buffer>): { read: LanParamReader; asked: string[] } {
  const asked: string[] = [];
  return { asked, read: async (ch, param, set = 0) => { asked.push(`${ch}/${param}/${set}`); return params[`${ch}/${param}/${set}`]; } };
}

test('IPv4 and MAC from the first LAN channel with an address; IPv6: the first global static, then dynamic, address', async () => {
  const { read, asked } = bmc({
    '2/3/0': Buffer.from([192, 0, 2, 77]),
    '2/5/0': Buffer.from([0x52, 0x54, 0x00, 0xbe, 0xef, 0x01]),
    '2/55/0': Buffer.from([1, 2, 0]),
    '2/56/0': slot(0, '::', 0),
    '2/59/0': slot(0, 'fe80::d294:66ff:fe00:aaff'),
    '2/59/1': slot(1, '2001:db8:0:0::42'),
  });
  assert.deepEqual(await readBmcLan(read), { address: '192.0.2.77', mac: '52:54:00:be:ef:01', v6address: '2001:db8::42' });
  assert.deepEqual(asked.slice(0, 3), ['1/3/0', '2/3/0', '2/5/0'], 'channels in order; the MAC of the channel with the address');
});

test('no address anywhere: 0.0.0.0 and ::/0, as IPA reports them; a channel with 0.0.0.0 gives neither address nor MAC', async () => {
  const { read } = bmc({ '1/3/0': Buffer.from([0, 0, 0, 0]), '1/5/0': Buffer.from([1, 2, 3, 4, 5, 6]), '1/55/0': Buffer.from([0, 0, 0]) });
  assert.deepEqual(await readBmcLan(read), { address: '0.0.0.0', v6address: '::/0' });
});

test('tool output: ipmi-lan-param hex, ipmitool raw (revision byte first, folded lines); junk is no answer', () => {
  assert.deepEqual(bytesFromHex('c0 00 02 4d\n'), Buffer.from([192, 0, 2, 77]));
  assert.deepEqual(bytesFromHex(' 11 c0 00 02 4d\n', 1), Buffer.from([192, 0, 2, 77]));
  const raw = ` 11 00 80 20 01 0d b8 00 00 00 00 00 00 00 00 00\n 00 00 42 40 00\n`;
  assert.equal(globalV6(bytesFromHex(raw, 1)), '2001:db8::42');
  assert.equal(bytesFromHex('Unable to send RAW command'), undefined);
  assert.equal(bytesFromHex(''), undefined);
  assert.equal(globalV6(Buffer.from([0, 0, 1])), undefined, 'a short slot is no address');
});
