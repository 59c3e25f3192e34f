/**
 * Issue 13, iPXE scripts: no operator string reaches a script unchecked. Before the fix a kernel parameter or
 * a deploy_kernel URL holding a newline added its own iPXE command line (e.g. `shell`) to the node's script.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidParameterValue } from '../../conductor/errors.js';
import { IpxeBoot, deployScript, kernelParamTokens, scriptUrl } from '../../conductor/drivers/ipxe.js';
import type { DriverNode } from '../../conductor/drivers/types.js';

const dir = await mkdtemp(join(tmpdir(), 'bmts-sec-ipxe-'));
after(() => rm(dir, { recursive: true, force: true }));
const kernel = join(dir, 'vmlinuz');
await writeFile(kernel, 'K');

function node(info: Record<string, unknown>): DriverNode {
  return { uuid: 'c0ffee00-0000-4000-8000-000000000001', driver: 'ipmi', driver_info: info, instance_info: {},
    driver_internal_info: {}, properties: {}, ports: [{ address: '52:54:00:aa:bb:cc', pxe_enabled: true }] };
}

const httpRoot = join(dir, 'http');
const ipxe = new IpxeBoot({ httpRoot, httpUrl: 'http://10.0.2.100:8080', allowedFileDirs: [dir] });
const script = (): Promise<string> => readFile(join(httpRoot, 'c0ffee00-0000-4000-8000-000000000001', 'config'), 'utf8').catch(() => '');

test('a kernel parameter with "\\nshell" cannot add an iPXE command', async () => {
  const n = node({ deploy_kernel: kernel, deploy_ramdisk: kernel, kernel_append_params: 'console=ttyS0\nshell' });
  assert.throws(() => ipxe.validate(n), (e: unknown) => {
    assert.ok(e instanceof InvalidParameterValue);
    assert.match(e.message, /kernel_append_params must not contain newlines or control characters/);
    return true;
  });
  await assert.rejects(ipxe.prepareRamdisk(n, { apiUrl: 'http://10.0.2.100:6385', kernelParams: [] }), InvalidParameterValue);
  assert.doesNotMatch(await script(), /^shell$/m);
});

test('a deploy_kernel URL with a newline cannot add an iPXE command', async () => {
  const n = node({ deploy_kernel: 'http://10.0.2.100:9/k\nshell\n#', deploy_ramdisk: kernel });
  assert.throws(() => ipxe.validate(n), /deploy_kernel must not contain whitespace or control characters/);
  await assert.rejects(ipxe.prepareRamdisk(n, { apiUrl: 'http://10.0.2.100:6385', kernelParams: [] }), InvalidParameterValue);
  assert.doesNotMatch(await script(), /^shell$/m);
});

test('kernel parameters are checked token by token', () => {
  assert.deepEqual(kernelParamTokens('console=ttyS0,115200n8  ipa-debug=1\tquiet', 'p'), ['console=ttyS0,115200n8', 'ipa-debug=1', 'quiet']);
  assert.deepEqual(kernelParamTokens('opt="ab"', 'p'), ['opt="ab"']);
  // A quoted value with a space would be split into two unbalanced tokens by iPXE: refused, not mangled.
  assert.throws(() => kernelParamTokens('opt="a b"', 'p'), /unbalanced quotes/);
  for (const bad of ['a\rb', 'x\x00', 'x || shell', 'a&&b', '${net0/ip}', '#!ipxe', ':label', 'opt="unbalanced', "it's", 'a\\b', 'ü=1']) {
    assert.throws(() => kernelParamTokens(bad, 'kernel_append_params'), InvalidParameterValue, JSON.stringify(bad));
  }
});

test('script URLs are normalised by URL and refused with whitespace, control characters or iPXE syntax', () => {
  assert.equal(scriptUrl('http://10.0.2.100:8080/a b'.replace(' ', '%20'), 'u'), 'http://10.0.2.100:8080/a%20b');
  assert.equal(scriptUrl('http://h/${x}', 'u'), 'http://h/$%7Bx%7D', 'settings expansion is percent-encoded away');
  for (const bad of ['http://h/k\nshell', 'http://h/k shell', 'http://h/\tk', 'http://h/?q=${x}&&y', 'http://h/a||b', 'ftp://h/k', 'not a url']) {
    assert.throws(() => scriptUrl(bad, 'u'), InvalidParameterValue, JSON.stringify(bad));
  }
});

test('deployScript itself refuses unsafe parts (last line of defence)', () => {
  const ok = { kernelUrl: 'http://h/k', ramdiskUrl: 'http://h/r', params: ['console=ttyS0'], node: 'n-1' };
  assert.match(deployScript(ok), /kernel --name deploy_kernel http:\/\/h\/k selinux=0 troubleshoot=0 text console=ttyS0 BOOTIF=\$\{mac\}/);
  assert.throws(() => deployScript({ ...ok, params: ['x\nshell'] }), InvalidParameterValue);
  assert.throws(() => deployScript({ ...ok, ramdiskUrl: 'http://h/r\nshell' }), InvalidParameterValue);
  assert.throws(() => deployScript({ ...ok, node: 'n\nshell' }), InvalidParameterValue);
});
