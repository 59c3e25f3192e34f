import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildConfig } from '../../conductor/config.js';
import { startDhcpProvider } from '../../conductor/dhcp/index.js';
import { DnsmasqDhcp } from '../../conductor/dhcp/dnsmasq.js';
import {
  dnsmasqConf, hostEntry, hostFileName, ignoreEntry, leasedAddresses, normaliseMac, optsFile, optsFileName,
} from '../../conductor/dhcp/dnsmasq-config.js';
import { bootOptionsFor } from '../../conductor/dhcp/options.js';
import type { DriverNode } from '../../conductor/drivers/types.js';

const dir = await mkdtemp(join(tmpdir(), 'bmts-dhcp-unit-'));
after(() => rm(dir, { recursive: true, force: true }));

function node(uuid: string, macs: string[], pxe = true): DriverNode {
  return { uuid, driver: 'ipmi', driver_info: {}, instance_info: {}, driver_internal_info: {}, properties: {},
    ports: macs.map((address) => ({ address, pxe_enabled: pxe })) };
}

test('host entries, option files and names follow Ironic\'s dnsmasq provider', () => {
  assert.equal(hostFileName('52:54:00:AA:BB:01'), 'ironic-52:54:00:aa:bb:01.conf');
  assert.equal(optsFileName('1be26c0b-03f2-4d2e-ae87-c02d7f33c123'), 'ironic-1be26c0b-03f2-4d2e-ae87-c02d7f33c123.conf');
  assert.equal(hostEntry('52-54-00-AA-BB-01', 'bmts-t1'), '52:54:00:aa:bb:01,set:bmts-t1,set:ironic\n');
  assert.equal(ignoreEntry('52:54:00:aa:bb:01'), '52:54:00:aa:bb:01,ignore\n');
  assert.throws(() => normaliseMac('52:54:00:aa:bb'), /not a MAC/);
  assert.throws(() => hostFileName('../../etc/passwd'), /not a MAC/);
  assert.throws(() => optsFileName('../x'), /invalid node UUID/);
  assert.throws(() => hostEntry('52:54:00:aa:bb:01', 'a,set:other'), /invalid dnsmasq tag/);
  assert.equal(optsFile('t1', [{ opt_name: 'tag:!ipxe,67', opt_value: 'undionly.kpxe', ip_version: 4 },
    { opt_name: '66', opt_value: '192.168.77.1', ip_version: 4 }, { opt_name: '59', opt_value: 'x', ip_version: 6 }]),
  'tag:t1,tag:!ipxe,67,undionly.kpxe\ntag:t1,66,192.168.77.1\n');
  assert.throws(() => optsFile('t1', [{ opt_name: '67', opt_value: 'a\ndhcp-range=1,2', ip_version: 4 }]), /control characters/);
  assert.throws(() => optsFile('t1', [{ opt_name: '67\nx', opt_value: 'a', ip_version: 4 }]), /control characters|invalid/);
  assert.throws(() => optsFile('t1', [{ opt_name: 'dhcp-range', opt_value: 'a', ip_version: 4 }]), /invalid DHCP option name/);
});

test('boot options per firmware and boot interface (Ironic\'s dhcp_options_for_instance)', () => {
  const pick = (o: ReturnType<typeof bootOptionsFor>): string[] => o.map((x) => `${x.opt_name}=${x.opt_value}`);
  const http = 'http://192.168.77.1:8080';
  const tail = ['66=192.168.77.1', '150=192.168.77.1', '255=192.168.77.1'];
  assert.deepEqual(pick(bootOptionsFor({ bootInterface: 'ipxe', bootMode: 'bios', tftpServer: '192.168.77.1', httpUrl: http, ipxeTag: true })),
    ['tag:!ipxe,67=undionly.kpxe', `tag:ipxe,67=${http}/boot.ipxe`, ...tail]);
  assert.deepEqual(pick(bootOptionsFor({ bootInterface: 'ipxe', bootMode: 'uefi', tftpServer: '192.168.77.1', httpUrl: `${http}/`, ipxeTag: true })),
    ['tag:!ipxe,67=snponly.efi', `tag:ipxe,67=${http}/boot.ipxe`, ...tail]);
  assert.deepEqual(pick(bootOptionsFor({ bootInterface: 'ipxe', bootMode: 'uefi', tftpServer: '192.168.77.1', httpUrl: http, ipxeTag: false, bootFile: 'ipxe.efi' })),
    ['!175,67=ipxe.efi', `67=${http}/boot.ipxe`, ...tail]);
  assert.deepEqual(pick(bootOptionsFor({ bootInterface: 'pxe', bootMode: 'bios', tftpServer: '192.168.77.1', ipxeTag: true })),
    ['67=pxelinux.0', ...tail]);
  assert.deepEqual(pick(bootOptionsFor({ bootInterface: 'pxe', bootMode: 'uefi', tftpServer: '192.168.77.1', ipxeTag: true })),
    ['67=bootx64.efi', ...tail]);
  assert.throws(() => bootOptionsFor({ bootInterface: 'ipxe', bootMode: 'bios', tftpServer: 'x', ipxeTag: true }), /boot server URL/);
  // Every rendered option set is a valid dnsmasq option file.
  assert.match(optsFile('t', bootOptionsFor({ bootInterface: 'ipxe', bootMode: 'bios', tftpServer: '10.0.0.1', httpUrl: http, ipxeTag: true })), /^tag:t,tag:ipxe,67,http/m);
});

test('dnsmasq.conf: DHCP only on the provisioning interface, only known MACs, TFTP, per-node dirs', () => {
  const conf = dnsmasqConf({ dir: '/d', interface: 'br0', range: '192.168.77.100,192.168.77.150,1h', tftpRoot: '/t' });
  for (const line of ['port=0', 'interface=br0', 'except-interface=lo', 'dhcp-range=192.168.77.100,192.168.77.150,1h',
    'dhcp-hostsdir=/d/hostsdir', 'dhcp-optsdir=/d/optsdir', 'dhcp-leasefile=/d/dnsmasq.leases', 'dhcp-match=set:ipxe,175',
    'dhcp-option-force=tag:ipxe,encap:175,176,1', 'dhcp-ignore=tag:!known', 'enable-tftp', 'tftp-root=/t']) {
    assert.ok(conf.split('\n').includes(line), `missing ${line} in\n${conf}`);
  }
  assert.doesNotMatch(dnsmasqConf({ dir: '/d', interface: 'br0', range: '1.2.3.4,1.2.3.5', allowUnknown: true }), /dhcp-ignore|tftp/);
  // dnsmasq's ping check stays on unless asked (the lab rack turns it off: nothing else holds addresses there).
  assert.doesNotMatch(conf, /^no-ping$/m);
  assert.match(dnsmasqConf({ dir: '/d', interface: 'br0', range: '1.2.3.4,1.2.3.5', pingCheck: false }), /^no-ping$/m);
  assert.doesNotMatch(dnsmasqConf({ dir: '/d', interface: 'br0', range: '1.2.3.4,1.2.3.5', pingCheck: true }), /no-ping/);
  assert.throws(() => dnsmasqConf({ dir: '/d', interface: 'br0\nserver=8.8.8.8', range: '1.2.3.4,1.2.3.5' }), /control|invalid/);
  assert.throws(() => dnsmasqConf({ dir: '/d', interface: 'br0', range: '1.2.3.4' }), /invalid DHCP range/);
});

test('leases: addresses of the node\'s MACs only', () => {
  const leases = '1700000000 52:54:00:aa:bb:01 192.168.77.101 * 01:52:54:00:aa:bb:01\n1700000000 52:54:00:aa:bb:02 192.168.77.102 * *\n';
  assert.deepEqual(leasedAddresses(leases, ['52:54:00:AA:BB:01']), ['192.168.77.101']);
  assert.deepEqual(leasedAddresses('', ['52:54:00:aa:bb:01']), []);
});

test('provider (external dnsmasq): entries while in a ramdisk boot, ignore after; files survive a new provider', async () => {
  const d = join(dir, 'ext');
  const p = new DnsmasqDhcp({ dir: d, interface: 'br0', range: '192.168.77.100,192.168.77.150', manage: false });
  await p.start();
  assert.match(await readFile(join(d, 'dnsmasq.conf'), 'utf8'), /dhcp-hostsdir=/);
  const n = node('u-1', ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02']);
  const opts = bootOptionsFor({ bootInterface: 'pxe', bootMode: 'bios', tftpServer: '192.168.77.1', ipxeTag: true });
  await p.updateDhcpOpts(n, opts);
  const h1 = await readFile(join(d, 'hostsdir', 'ironic-52:54:00:aa:bb:01.conf'), 'utf8');
  const tag = /set:(bmts-[0-9a-f-]+),set:ironic/.exec(h1)?.[1];
  assert.ok(tag, h1);
  assert.equal(await readFile(join(d, 'hostsdir', 'ironic-52:54:00:aa:bb:02.conf'), 'utf8'), `52:54:00:aa:bb:02,set:${tag},set:ironic\n`);
  assert.equal(await readFile(join(d, 'optsdir', 'ironic-u-1.conf'), 'utf8'), optsFile(tag, opts));
  // A second transaction gets a new tag, so the first one's options can never apply again.
  await p.updateDhcpOpts(n, opts);
  assert.doesNotMatch(await readFile(join(d, 'hostsdir', 'ironic-52:54:00:aa:bb:01.conf'), 'utf8'), new RegExp(tag));
  await p.close();
  // A restarted conductor (new provider on the same dir) finds the entries and cleans them.
  const p2 = new DnsmasqDhcp({ dir: d, interface: 'br0', range: '192.168.77.100,192.168.77.150', manage: false });
  await p2.start();
  assert.match(await readFile(join(d, 'hostsdir', 'ironic-52:54:00:aa:bb:01.conf'), 'utf8'), /set:ironic/);
  await p2.cleanDhcpOpts(n);
  assert.equal(await readFile(join(d, 'hostsdir', 'ironic-52:54:00:aa:bb:01.conf'), 'utf8'), '52:54:00:aa:bb:01,ignore\n');
  assert.deepEqual(await readdir(join(d, 'optsdir')), []);
  // Ports not pxe-enabled get nothing.
  await p2.updateDhcpOpts(node('u-2', ['52:54:00:aa:bb:03'], false), opts);
  assert.ok(!(await readdir(join(d, 'hostsdir'))).includes('ironic-52:54:00:aa:bb:03.conf'));
  await p2.close();
});

test('provider (managed): started, SIGHUP after each change, restarted when it dies, stopped on close', async () => {
  const d = join(dir, 'managed');
  const fake = join(dir, 'fake-dnsmasq.sh');
  // Stands in for dnsmasq: records its arguments and each SIGHUP.
  await writeFile(fake, `#!/bin/sh\necho "$@" >> ${d}/args\ntrap 'echo HUP >> ${d}/hups' HUP\nwhile :; do sleep 0.05; done\n`);
  await chmod(fake, 0o755);
  const p = new DnsmasqDhcp({ dir: d, interface: 'br0', range: '192.168.77.100,192.168.77.150', manage: true, binary: fake });
  try {
    await p.start();
    const first = p.pid();
    assert.ok(first);
    const hups = async (): Promise<number> => (await readFile(join(d, 'hups'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
    await sleep(300);
    assert.match(await readFile(join(d, 'args'), 'utf8'), new RegExp(`--conf-file=${d}/dnsmasq.conf`));
    const n = node('u-3', ['52:54:00:aa:bb:04']);
    await p.updateDhcpOpts(n, []);
    await waitFor(async () => (await hups()) === 1);
    await p.cleanDhcpOpts(n);
    await waitFor(async () => (await hups()) === 2);
    process.kill(first, 'SIGKILL');
    await waitFor(async () => p.starts === 2, 5000);
    assert.notEqual(p.pid(), first);
  } finally {
    const last = p.pid();
    await p.close();
    if (last) assert.throws(() => process.kill(last, 0), 'the managed dnsmasq outlived close()');
  }
});

test('config: dnsmasq needs a range and the TFTP server address; none needs nothing', async () => {
  await assert.rejects(startDhcpProvider(buildConfig({ data_dir: dir, dhcp: { provider: 'dnsmasq' } })), /dhcp\.range/);
  await assert.rejects(startDhcpProvider(buildConfig({ data_dir: dir, dhcp: { provider: 'dnsmasq', range: '1.2.3.4,1.2.3.9' } })), /tftp_server/);
  const none = await startDhcpProvider(buildConfig({ data_dir: dir }));
  assert.equal(none.name, 'none');
  await none.close();
});

async function waitFor(cond: () => Promise<boolean> | boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail('condition not met in time');
    await sleep(50);
  }
}
