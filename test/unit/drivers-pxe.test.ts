import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DnsmasqDhcp } from '../../conductor/dhcp/dnsmasq.js';
import { IpxeBoot } from '../../conductor/drivers/ipxe.js';
import { PxeBoot, grubConfig, grubMasterConfig, pxelinuxConfig } from '../../conductor/drivers/pxe.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { InvalidParameterValue } from '../../conductor/errors.js';

const dir = await mkdtemp(join(tmpdir(), 'bmts-pxe-unit-'));
after(() => rm(dir, { recursive: true, force: true }));
const kernel = join(dir, 'vmlinuz');
const ramdisk = join(dir, 'initramfs');
await writeFile(kernel, 'KERNEL');
await writeFile(ramdisk, 'RAMDISK');
const UUID = '1be26c0b-03f2-4d2e-ae87-c02d7f33c123';
const MAC = '52:54:00:AA:BB:01';

function node(extra: Partial<DriverNode> = {}): DriverNode {
  return { uuid: UUID, driver: 'ipmi', driver_info: { deploy_kernel: kernel, deploy_ramdisk: ramdisk },
    instance_info: {}, driver_internal_info: {}, properties: {}, ports: [{ address: MAC, pxe_enabled: true }], ...extra };
}

test('pxelinux config: Ironic\'s deploy label, TFTP-relative paths, BOOTIF through ipappend 2', () => {
  const c = pxelinuxConfig({ kernel: `${UUID}/deploy_kernel`, initrds: [`${UUID}/deploy_ramdisk`, `${UUID}/api-ca.cpio`],
    params: ['console=ttyS0 ipa-api-url=https://192.168.77.1:6385'] });
  assert.equal(c, `default deploy

label deploy
kernel ${UUID}/deploy_kernel
append initrd=${UUID}/deploy_ramdisk,${UUID}/api-ca.cpio selinux=0 troubleshoot=0 text console=ttyS0 ipa-api-url=https://192.168.77.1:6385
ipappend 2
`);
  assert.throws(() => pxelinuxConfig({ kernel: '../etc/passwd', initrds: [], params: [] }), InvalidParameterValue);
  assert.throws(() => pxelinuxConfig({ kernel: 'k', initrds: ['r'], params: ['a\nlabel evil'] }), InvalidParameterValue);
});

test('grub config: deploy menuentry with linux/initrd on the TFTP device; the master config sources the per-MAC file', () => {
  const c = grubConfig({ kernel: 'u/deploy_kernel', initrds: ['u/deploy_ramdisk'], params: ['console=ttyS0'], tftpServer: '192.168.77.1' });
  assert.match(c, /^set default=deploy\n/);
  assert.match(c, /\n {4}linux \/u\/deploy_kernel selinux=0 troubleshoot=0 text console=ttyS0 boot_server=192\.168\.77\.1\n/);
  assert.match(c, /\n {4}initrd \/u\/deploy_ramdisk\n}/);
  assert.throws(() => grubConfig({ kernel: 'k', initrds: ['r'], params: ['a;reboot'] }), InvalidParameterValue);
  assert.match(grubMasterConfig(), /^source \/\$net_default_mac\.conf$/m);
});

test('pxe boot interface: BIOS node gets a PXELINUX config, per-MAC links and DHCP entries only while in the ramdisk', async () => {
  const tftp = join(dir, 'tftp1');
  const dhcp = new DnsmasqDhcp({ dir: join(dir, 'dhcp1'), interface: 'br0', range: '192.168.77.100,192.168.77.150', manage: false });
  await dhcp.start();
  const pxe = new PxeBoot({ tftpRoot: tftp, allowedFileDirs: [dir], installLoaders: false, kernelAppendParams: 'console=ttyS0',
    dhcp: { provider: dhcp, tftpServer: '192.168.77.1', defaultBootMode: 'bios' } });
  await pxe.prepareRamdisk(node(), { apiUrl: 'https://192.168.77.1:6385', kernelParams: [], requestId: 'req-1', apiCaPem: 'PEM' });
  const cfg = await readFile(join(tftp, UUID, 'config'), 'utf8');
  assert.match(cfg, /^kernel 1be26c0b-[^ ]+\/deploy_kernel$/m);
  assert.match(cfg, /initrd=[^ ]+\/deploy_ramdisk,[^ ]+\/api-ca\.cpio .*console=ttyS0 ipa-api-url=https:\/\/192\.168\.77\.1:6385 ipa-global-request-id=req-1 ipa-cafile=/);
  assert.equal(await readFile(join(tftp, UUID, 'deploy_kernel'), 'utf8'), 'KERNEL');
  assert.equal(await readlink(join(tftp, 'pxelinux.cfg', '01-52-54-00-aa-bb-01')), `../${UUID}/config`);
  assert.equal(await readlink(join(tftp, 'grub.cfg-01-52-54-00-aa-bb-01')), `${UUID}/config`);
  assert.equal(await readlink(join(tftp, '52:54:00:aa:bb:01.conf')), `${UUID}/config`);
  assert.match(await readFile(join(tftp, 'pxelinux.cfg', 'default'), 'utf8'), /localboot 0/);
  const host = join(dir, 'dhcp1', 'hostsdir', 'ironic-52:54:00:aa:bb:01.conf');
  assert.match(await readFile(host, 'utf8'), /^52:54:00:aa:bb:01,set:bmts-[0-9a-f-]+,set:ironic$/m);
  assert.match(await readFile(join(dir, 'dhcp1', 'optsdir', `ironic-${UUID}.conf`), 'utf8'), /^tag:bmts-[0-9a-f-]+,67,pxelinux\.0$/m);
  await pxe.prepareInstance(node());
  assert.equal(await readFile(host, 'utf8'), '52:54:00:aa:bb:01,ignore\n');
  assert.ok(!existsSync(join(tftp, 'pxelinux.cfg', '01-52-54-00-aa-bb-01')));
  assert.ok(!existsSync(join(tftp, UUID)));
  await dhcp.close();
});

test('pxe boot interface: a UEFI node gets a GRUB config and bootx64.efi from DHCP', async () => {
  const tftp = join(dir, 'tftp2');
  const dhcp = new DnsmasqDhcp({ dir: join(dir, 'dhcp2'), interface: 'br0', range: '192.168.77.100,192.168.77.150', manage: false });
  await dhcp.start();
  const pxe = new PxeBoot({ tftpRoot: tftp, allowedFileDirs: [dir], installLoaders: false,
    dhcp: { provider: dhcp, tftpServer: '192.168.77.1', defaultBootMode: 'bios' } });
  await pxe.prepareRamdisk(node({ properties: { capabilities: 'boot_mode:uefi' } }), { apiUrl: 'http://192.168.77.1:6385', kernelParams: [] });
  assert.match(await readFile(join(tftp, UUID, 'config'), 'utf8'), /menuentry "deploy"/);
  assert.match(await readFile(join(dir, 'dhcp2', 'optsdir', `ironic-${UUID}.conf`), 'utf8'), /,67,bootx64\.efi$/m);
  await pxe.cleanUpRamdisk(node());
  await dhcp.close();
});

test('pxe boot interface: validate wants tftp_root and local deploy files', () => {
  assert.throws(() => new PxeBoot({ tftpRoot: '' }).validate(node()), /tftp_root/);
  const pxe = new PxeBoot({ tftpRoot: join(dir, 't3'), allowedFileDirs: [dir], installLoaders: false });
  assert.throws(() => pxe.validate(node({ driver_info: { deploy_kernel: 'http://example.com/k', deploy_ramdisk: ramdisk } })),
    /deploy_kernel must be a local file/);
  assert.throws(() => pxe.validate(node({ driver_info: { deploy_kernel: '/etc/passwd', deploy_ramdisk: ramdisk } })), InvalidParameterValue);
  pxe.validate(node());
});

test('ipxe boot interface: BIOS node gets undionly.kpxe for PXE ROMs and the script URL for iPXE; cleaned after', async () => {
  const dhcp = new DnsmasqDhcp({ dir: join(dir, 'dhcp4'), interface: 'br0', range: '192.168.77.100,192.168.77.150', manage: false });
  await dhcp.start();
  const ipxe = new IpxeBoot({ httpRoot: join(dir, 'http4'), httpUrl: 'http://192.168.77.1:8080', allowedFileDirs: [dir],
    dhcp: { provider: dhcp, tftpServer: '192.168.77.1', defaultBootMode: 'bios' } });
  await ipxe.prepareRamdisk(node(), { apiUrl: 'http://192.168.77.1:6385', kernelParams: [] });
  const opts = await readFile(join(dir, 'dhcp4', 'optsdir', `ironic-${UUID}.conf`), 'utf8');
  assert.match(opts, /,tag:!ipxe,67,undionly\.kpxe$/m);
  assert.match(opts, /,tag:ipxe,67,http:\/\/192\.168\.77\.1:8080\/boot\.ipxe$/m);
  await ipxe.cleanUpRamdisk(node());
  assert.equal(await readFile(join(dir, 'dhcp4', 'hostsdir', 'ironic-52:54:00:aa:bb:01.conf'), 'utf8'), '52:54:00:aa:bb:01,ignore\n');
  assert.ok(!existsSync(join(dir, 'dhcp4', 'optsdir', `ironic-${UUID}.conf`)));
  await dhcp.close();
});
