/** The QEMU argument builder of lab/qemu.ts: the network-safety and boot rules every VM test relies on. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootifFor, buildQemuArgs, stripAnsi } from '../../lab/qemu.js';

const after = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));

test('direct boot: TCG, -no-reboot, panic=1 appended, no iPXE ROM, serial to the log file', () => {
  const args = buildQemuArgs({ kernel: '/k', initrd: '/i', append: 'console=ttyS0 x=1', mac: '52:54:00:00:00:07' }, '/tmp/s.log');
  assert.deepEqual(after(args, '-accel'), ['tcg']);
  assert.deepEqual(after(args, '-m'), ['512']);
  assert.ok(args.includes('-no-reboot'));
  assert.deepEqual(after(args, '-append'), ['console=ttyS0 x=1 panic=1']);
  assert.deepEqual(after(args, '-serial'), ['file:/tmp/s.log']);
  assert.deepEqual(after(args, '-device'), ['virtio-net-pci,netdev=n0,mac=52:54:00:00:00:07,romfile=', 'virtio-rng-pci']);
  assert.deepEqual(after(args, '-initrd'), ['/i']);
  const noRng = buildQemuArgs({ kernel: '/k', rng: false }, '/tmp/s.log');
  assert.deepEqual(after(noRng, '-device').filter((d) => d.startsWith('virtio-rng')), []);
});

test('restricted user network: guestfwd in the cmd: form, hostfwd on 127.0.0.1 only, tftp/bootfile', () => {
  const args = buildQemuArgs({
    boot: 'network-once', guestfwd: [{ guestPort: 6385 }, { guestPort: 80, hostPort: 8080 }],
    hostfwd: [{ hostPort: 19999, guestPort: 9999 }], tftp: '/srv/tftp', bootfile: 'boot.ipxe', disks: ['/d.img'],
  }, '/s');
  const [netdev] = after(args, '-netdev');
  assert.equal(netdev, 'user,id=n0,restrict=on,'
    + 'guestfwd=tcp:10.0.2.100:6385-cmd:busybox nc 127.0.0.1 6385,guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 8080,'
    + 'hostfwd=tcp:127.0.0.1:19999-:9999,tftp=/srv/tftp,bootfile=boot.ipxe');
  assert.deepEqual(after(args, '-boot'), ['once=n,order=c']);
  assert.ok(!args.includes('-no-reboot'), 'a network boot that deploys must be able to reboot into the disk');
  assert.ok(!after(args, '-device')[0]?.includes('romfile='), 'PXE needs the NIC ROM');
  assert.deepEqual(after(args, '-drive'), ['file=/d.img,if=virtio,format=raw']);
});

test('a comma inside a netdev value or disk path is refused (QEMU would split it into another option)', () => {
  assert.throws(() => buildQemuArgs({ boot: 'network', tftp: '/a,b' }, '/s'), /comma/);
  assert.throws(() => buildQemuArgs({ boot: 'disk', disks: ['/x,y.img'] }, '/s'), /comma/);
  assert.throws(() => buildQemuArgs({ boot: 'direct' }, '/s'), /kernel/);
});

test('BOOTIF form and ANSI stripping', () => {
  assert.equal(bootifFor('52:54:00:AA:bb:01'), '01-52-54-00-aa-bb-01');
  assert.equal(stripAnsi('\x1b[2J\x1b[0;1mSeaBIOS\x1b[0m\r\nok\x1bc'), 'SeaBIOS\nok');
});
