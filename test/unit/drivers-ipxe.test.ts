import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidParameterValue, MissingParameterValue } from '../../conductor/errors.js';
import { IpxeBoot, chainScript, hasNodeConfig, macHexhyp, tftpChainScript } from '../../conductor/drivers/ipxe.js';
import type { DriverNode } from '../../conductor/drivers/types.js';

const dir = await mkdtemp(join(tmpdir(), 'bmts-ipxe-unit-'));
after(() => rm(dir, { recursive: true, force: true }));
const kernel = join(dir, 'vmlinuz');
await writeFile(kernel, 'KERNEL');

function node(info: Record<string, unknown>, macs = ['52:54:00:AA:BB:01']): DriverNode {
  return { uuid: 'u-1', driver: 'ipmi', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {},
    ports: macs.map((address) => ({ address, pxe_enabled: true })) };
}

test('macHexhyp matches iPXE ${mac:hexhyp}', () => {
  assert.equal(macHexhyp('52:54:00:AA:BB:01'), '52-54-00-aa-bb-01');
  assert.equal(macHexhyp('52-54-00-aa-bb-01'), '52-54-00-aa-bb-01');
});

test('chain scripts: per-NIC lookup with fall-through, and the TFTP stub', () => {
  const s = chainScript('http://10.0.2.100:8080');
  assert.match(s, /^#!ipxe\n/);
  assert.match(s, /chain --autofree http:\/\/10\.0\.2\.100:8080\/pxelinux\.cfg\/\$\{net\$\{i\}\/mac:hexhyp\} \|\| goto next/);
  assert.match(s, /\nexit 0\n$/);
  assert.equal(tftpChainScript('http://h:1'), '#!ipxe\nchain --autofree http://h:1/boot.ipxe || exit 0\n');
});

test('validate names missing and malformed deploy_kernel/deploy_ramdisk', () => {
  const ipxe = new IpxeBoot({ httpRoot: join(dir, 'h0'), httpUrl: 'http://10.0.2.100:1', allowedFileDirs: [dir], allowLoopback: true });
  assert.throws(() => ipxe.validate(node({})), (e: unknown) => {
    assert.ok(e instanceof MissingParameterValue);
    assert.match(e.message, /deploy_kernel, deploy_ramdisk/);
    return true;
  });
  assert.throws(() => ipxe.validate(node({ deploy_kernel: 'relative/path', deploy_ramdisk: '/no/such/file' })), (e: unknown) => {
    assert.ok(e instanceof InvalidParameterValue);
    assert.match(e.message, /deploy_kernel must be an absolute path or an http\(s\) URL/);
    assert.match(e.message, /deploy_ramdisk file \/no\/such\/file does not exist/);
    return true;
  });
  assert.throws(() => ipxe.validate(node({ deploy_kernel: kernel, deploy_ramdisk: 'http://127.0.0.1:9/r' })), /no boot server to cache it/);
  ipxe.validate(node({ deploy_kernel: kernel, deploy_ramdisk: 'http://10.0.2.100:9/r' }));
});

test('prepareRamdisk writes the per-node script and per-MAC links; cleanUp removes them', async () => {
  const httpRoot = join(dir, 'h1');
  const tftpRoot = join(dir, 't1');
  const cached: string[] = [];
  const ipxe = new IpxeBoot({ httpRoot, tftpRoot, httpUrl: 'http://10.0.2.100:8080', kernelAppendParams: 'nofb nomodeset',
    cacheImage: async (u) => { cached.push(u); return 'http://10.0.2.100:8080/_images/k/ramdisk'; },
    allowedFileDirs: [dir], allowLoopback: true });
  const n = node({ deploy_kernel: `file://${kernel}`, deploy_ramdisk: 'http://127.0.0.1:5000/ramdisk' }, ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02']);
  await ipxe.prepareRamdisk(n, { apiUrl: 'http://10.0.2.100:6385', kernelParams: ['ipa-debug=1 nofb'], requestId: 'req-1' });
  const cfg = await readFile(join(httpRoot, 'u-1', 'config'), 'utf8');
  assert.match(cfg, /kernel --name deploy_kernel http:\/\/10\.0\.2\.100:8080\/u-1\/deploy_kernel selinux=0 troubleshoot=0 text nofb nomodeset ipa-debug=1 ipa-api-url=http:\/\/10\.0\.2\.100:6385 ipa-global-request-id=req-1 BOOTIF=\$\{mac\} initrd=deploy_ramdisk \|\| goto retry/);
  assert.match(cfg, /initrd --name deploy_ramdisk http:\/\/10\.0\.2\.100:8080\/_images\/k\/ramdisk \|\| goto retry/);
  assert.deepEqual(cached, ['http://127.0.0.1:5000/ramdisk']);
  assert.equal(await readFile(join(httpRoot, 'u-1', 'deploy_kernel'), 'utf8'), 'KERNEL');
  for (const m of ['52-54-00-aa-bb-01', '52-54-00-aa-bb-02']) {
    assert.equal(await readlink(join(httpRoot, 'pxelinux.cfg', m)), '../u-1/config');
  }
  assert.match(await readFile(join(httpRoot, 'boot.ipxe'), 'utf8'), /pxelinux\.cfg/);
  assert.match(await readFile(join(tftpRoot, 'boot.ipxe'), 'utf8'), /chain --autofree http:\/\/10\.0\.2\.100:8080\/boot\.ipxe/);
  // a node-facing URL is used verbatim (never fetched), and per-node kernel_append_params replace the default
  const n2 = node({ deploy_kernel: 'http://10.0.2.100:9999/k', deploy_ramdisk: 'http://10.0.2.100:9999/r', kernel_append_params: 'console=ttyS0' }, ['52:54:00:aa:bb:01']);
  await ipxe.prepareRamdisk(n2, { apiUrl: 'http://a', kernelParams: [] });
  const cfg2 = await readFile(join(httpRoot, 'u-1', 'config'), 'utf8');
  assert.match(cfg2, /kernel --name deploy_kernel http:\/\/10\.0\.2\.100:9999\/k selinux=0 troubleshoot=0 text console=ttyS0 ipa-api-url=http:\/\/a BOOTIF/);
  assert.equal(existsSync(join(httpRoot, 'pxelinux.cfg', '52-54-00-aa-bb-02')), false, 'stale MAC link of a removed port is gone');
  await ipxe.prepareInstance(n2);
  assert.equal(await hasNodeConfig(httpRoot, 'u-1'), false);
  assert.equal(existsSync(join(httpRoot, 'pxelinux.cfg', '52-54-00-aa-bb-01')), false);
  assert.ok(existsSync(join(httpRoot, 'boot.ipxe')), 'the shared chain script stays');
  await assert.rejects(ipxe.prepareRamdisk(node({ deploy_kernel: kernel, deploy_ramdisk: kernel }, []), { apiUrl: 'x', kernelParams: [] }), /no pxe-enabled port/);
});
