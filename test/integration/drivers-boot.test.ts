/**
 * Network boot for real: QEMU (TCG, restricted user net) gets tftp_root/boot.ipxe from QEMU's built-in TFTP,
 * chains to our boot server through a guestfwd rule, fetches the per-MAC script and the kernel + initramfs, and
 * the test reads the kernel command line our ipxe interface wrote off the serial console. One VM is powered on
 * by our ipmitool driver through ipmi_sim (that run also measures power-on -> kernel). A second checks that
 * with the per-node script removed (local boot) the chain falls through to the disk.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { have, run } from '../../common/exec.js';
import { startBootServer, type BootServer } from '../../conductor/boot-server.js';
import { IpxeBoot, hasNodeConfig, macHexhyp } from '../../conductor/drivers/ipxe.js';
import { IpmitoolManagement, IpmitoolPower } from '../../conductor/drivers/ipmitool.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { GUEST_HOST_ADDR, buildQemuArgs, freePort, startVm, stripAnsi, type Vm } from '../../lab/qemu.js';
import { daemonizableQemuArgs, startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';
import { buildWholeDiskImage, findHostKernel } from '../../lab/instance-image.js';

const need = ['qemu-system-x86_64', 'busybox', 'cpio', 'ipmi_sim', 'ipmitool'];
const missing: string[] = [];
for (const p of need) if (!(await have(p))) missing.push(p);
const kernels = existsSync('/boot') ? (await import('node:fs')).readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')) : [];
const skip = missing.length ? `missing ${missing.join(', ')}` : kernels.length === 0 ? 'no /boot/vmlinuz-*' : false;

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => { for (const c of cleanups.reverse()) await c().catch(() => undefined); }); // run every cleanup even if one fails

/** busybox-static initramfs whose /init prints the kernel command line and powers off. */
async function cmdlineInitramfs(dir: string): Promise<string> {
  const root = join(dir, 'initramfs-root');
  await mkdir(join(root, 'bin'), { recursive: true });
  for (const d of ['dev', 'proc']) await mkdir(join(root, d), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
  await chmod(join(root, 'bin', 'busybox'), 0o755);
  await writeFile(join(root, 'init'), `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
exec >/dev/console 2>&1
echo "BMTS-CMDLINE: $(/bin/busybox cat /proc/cmdline)"
echo "BMTS-UPTIME: $(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
`);
  await chmod(join(root, 'init'), 0o755);
  const out = join(dir, 'initramfs.cpio');
  await run('cpio', ['--quiet', '-o', '-H', 'newc', '-F', out], { cwd: root, input: 'bin\nbin/busybox\ndev\nproc\ninit\n', quiet: true });
  return out;
}

interface Lab { dir: string; httpRoot: string; tftpRoot: string; boot: BootServer; images: BootServer; ipxe: IpxeBoot; initrd: string; kernel: string }

async function lab(): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-drvboot-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const httpRoot = join(dir, 'http');
  const tftpRoot = join(dir, 'tftp');
  const port = await freePort();
  const boot = await startBootServer({ httpRoot, port, httpUrl: `http://${GUEST_HOST_ADDR}:${port}`, allowLoopback: true });
  cleanups.push(() => boot.close());
  // A separate loopback "image server": deploy_ramdisk given as its URL must be cached, not handed to the node.
  const images = await startBootServer({ httpRoot: join(dir, 'images') });
  cleanups.push(() => images.close());
  const initrd = await cmdlineInitramfs(dir);
  await copyFile(initrd, join(dir, 'images', 'initramfs.cpio'));
  const kernel = (await findHostKernel()).vmlinuz;
  const ipxe = new IpxeBoot({ httpRoot, httpUrl: boot.httpUrl, tftpRoot, kernelAppendParams: 'nofb', cacheImage: (u) => boot.cacheImage(u),
    allowLoopback: true, allowedFileDirs: [dirname(kernel)] });
  return { dir, httpRoot, tftpRoot, boot, images, ipxe, initrd, kernel };
}

function nodeFor(l: Lab, mac: string, extra: Record<string, unknown> = {}): DriverNode {
  return {
    uuid: 'a5c3a8f2-2f8e-4c7b-9d55-0d3c9e3b7d01', driver: 'ipmi',
    driver_info: {
      deploy_kernel: l.kernel, deploy_ramdisk: `${l.images.localUrl}/initramfs.cpio`,
      kernel_append_params: 'console=ttyS0 panic=1', ...extra,
    },
    instance_info: {}, driver_internal_info: {}, properties: {}, ports: [{ address: mac, pxe_enabled: true }],
  };
}

test('IPMI power-on PXE-boots the VM into our kernel with our kernel command line', { skip, timeout: 240_000 }, async () => {
  const l = await lab();
  const mac = '52:54:00:bb:10:01';
  const node = nodeFor(l, mac);
  await l.ipxe.prepareRamdisk(node, { apiUrl: `http://${GUEST_HOST_ADDR}:6385`, kernelParams: ['ipa-debug=1'], requestId: 'req-5b1c2e' });
  assert.ok(await hasNodeConfig(l.httpRoot, node.uuid));
  const serial = join(l.dir, 'serial.log');
  const args = daemonizableQemuArgs(buildQemuArgs({
    boot: 'network', mac, tftp: l.tftpRoot, bootfile: 'boot.ipxe', noReboot: true, guestfwd: [{ guestPort: l.boot.port }],
  }, serial));
  const sim: IpmiSim = await startIpmiSim({ qemu: { args } });
  cleanups.push(() => sim.stop());
  const opts = { minCommandIntervalS: 0, pollIntervalS: 0.1, attemptIntervalS: 1, commandRetryTimeoutS: 10 };
  const ipmiNode: DriverNode = { ...node, driver_info: { ...node.driver_info, ...sim.driverInfo() } };
  await new IpmitoolManagement(opts).setBootDevice(ipmiNode, 'pxe', false);
  const t0 = Date.now();
  await new IpmitoolPower(opts).setPowerState(ipmiNode, 'power on');
  const tOn = Date.now();
  let tKernel = 0;
  let tInit = 0;
  const deadline = Date.now() + 180_000;
  let text = '';
  while (Date.now() < deadline) {
    text = existsSync(serial) ? stripAnsi(readFileSync(serial, 'utf8')) : '';
    if (!tKernel && /Linux version|Decompressing Linux|Booting the kernel/.test(text)) tKernel = Date.now();
    if (/BMTS-CMDLINE: .*\n/.test(text)) { tInit = Date.now(); break; }
    if (!sim.isOn() && !/BMTS-CMDLINE/.test(text)) break;
    await sleep(100);
  }
  const cmdline = /BMTS-CMDLINE: (.*)\n/.exec(text)?.[1];
  assert.ok(cmdline, `no command line on the serial console (${serial}):\n${text.slice(-2000)}`);
  for (const p of [`ipa-api-url=http://${GUEST_HOST_ADDR}:6385`, `BOOTIF=${mac}`, 'ipa-global-request-id=req-5b1c2e',
    'console=ttyS0', 'panic=1', 'ipa-debug=1', 'initrd=deploy_ramdisk']) {
    assert.ok(cmdline.split(' ').includes(p), `missing ${p} in: ${cmdline}`);
  }
  assert.ok(!cmdline.includes('nofb'), 'driver_info.kernel_append_params replaces the default');
  const paths = l.boot.requests.filter((r) => r.status === 200).map((r) => r.path);
  assert.ok(paths.includes('/boot.ipxe'));
  assert.ok(paths.includes(`/pxelinux.cfg/${macHexhyp(mac)}`));
  assert.ok(paths.includes(`/${node.uuid}/deploy_kernel`));
  assert.ok(paths.some((p) => p.startsWith('/_images/') && p.endsWith('/initramfs.cpio')), paths.join(' '));
  // the guest never saw the loopback image server
  assert.ok(!readFileSync(join(l.httpRoot, node.uuid, 'config'), 'utf8').includes('127.0.0.1'));
  console.log(`# MEASURE ipmi power-on -> power on confirmed ${((tOn - t0) / 1000).toFixed(2)} s; -> kernel output ` +
    `${tKernel ? ((tKernel - t0) / 1000).toFixed(2) : '?'} s; -> /init ${((tInit - t0) / 1000).toFixed(2)} s ` +
    `(guest uptime at /init ${/BMTS-UPTIME: (\S+)/.exec(text)?.[1] ?? '?'} s)`);
  // /init powered off: QEMU exits (-no-reboot) and IPMI reports it; wait for that, not for a fixed time.
  const power = new IpmitoolPower(opts);
  const offBy = Date.now() + 30_000;
  let state = await power.getPowerState(ipmiNode);
  while (state !== 'power off' && Date.now() < offBy) {
    await sleep(100);
    state = await power.getPowerState(ipmiNode);
  }
  assert.equal(state, 'power off');
  await l.ipxe.cleanUpRamdisk(node);
  assert.equal(await hasNodeConfig(l.httpRoot, node.uuid), false);
  assert.equal(existsSync(join(l.httpRoot, 'pxelinux.cfg', macHexhyp(mac))), false);
});

test('after prepareInstance (local boot) a network-first VM falls through to its disk', { skip, timeout: 240_000 }, async () => {
  const l = await lab();
  const mac = '52:54:00:bb:10:02';
  const node = nodeFor(l, mac);
  await l.ipxe.prepareRamdisk(node, { apiUrl: `http://${GUEST_HOST_ADDR}:6385`, kernelParams: [] });
  await l.ipxe.prepareInstance(node);
  assert.equal(await hasNodeConfig(l.httpRoot, node.uuid), false);
  const disk = await buildWholeDiskImage({ dir: join(l.dir, 'disk') });
  let vm: Vm | undefined;
  await mkdir(join(l.dir, 'vm2'));
  try {
    vm = await startVm({ boot: 'network', mac, tftp: l.tftpRoot, bootfile: 'boot.ipxe', guestfwd: [{ guestPort: l.boot.port }],
      disks: [disk.path], noReboot: true, dir: join(l.dir, 'vm2') });
    await vm.waitForSerial(new RegExp(disk.markerLine), 150_000);
    const s = vm.readSerial();
    assert.match(s, /No boot configuration for this machine here/);
    assert.ok(!s.includes('BMTS-CMDLINE'));
    assert.ok(l.boot.requests.some((r) => r.path === `/pxelinux.cfg/${macHexhyp(mac)}` && r.status === 404));
  } finally {
    await vm?.stop();
  }
});
