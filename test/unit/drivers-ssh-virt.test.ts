/**
 * The ssh hardware type's pure parts: the libvirt boot-order rewrite, remote-argument quoting and driver_info
 * validation (every problem named at once; passwords and option-looking names refused).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { libvirtFirstBoot, parseSshInfo, setLibvirtBootOrder, shellQuote } from '../../conductor/drivers/ssh-virt.js';
import { InvalidParameterValue, MissingParameterValue } from '../../conductor/errors.js';
import type { DriverNode } from '../../conductor/drivers/types.js';

const XML = `<domain type='qemu'>
  <name>n1</name>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='network'/>
    <boot dev='hd'/>
  </os>
  <devices/>
</domain>`;

const node = (info: Record<string, unknown>): DriverNode => ({
  uuid: 'u1', driver: 'ssh', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [],
});

describe('ssh driver: libvirt boot order', () => {
  test('disk first keeps network after it; network first restores the order', () => {
    const disk = setLibvirtBootOrder(XML, 'hd');
    assert.equal(libvirtFirstBoot(disk), 'disk');
    assert.deepEqual([...disk.matchAll(/<boot dev='([a-z]+)'\/>/g)].map((m) => m[1]), ['hd', 'network']);
    assert.match(disk, /<name>n1<\/name>/);
    const net = setLibvirtBootOrder(disk, 'network');
    assert.equal(libvirtFirstBoot(net), 'pxe');
    assert.deepEqual([...net.matchAll(/<boot dev='([a-z]+)'\/>/g)].map((m) => m[1]), ['network', 'hd']);
  });
  test('a domain with no boot entries gets one; XML without <os> is an error', () => {
    const bare = XML.replace(/\s*<boot dev='[a-z]+'\/>/g, '');
    assert.equal(libvirtFirstBoot(bare), null);
    assert.equal(libvirtFirstBoot(setLibvirtBootOrder(bare, 'cdrom')), 'cdrom');
    assert.throws(() => setLibvirtBootOrder('<domain/>', 'hd'), /no <os>/);
  });
});

describe('ssh driver: quoting and driver_info', () => {
  test('single quotes survive a round trip through sh', () => {
    assert.equal(shellQuote("a'b"), `'a'\\''b'`);
    assert.equal(shellQuote('$(reboot)'), `'$(reboot)'`);
  });
  test('missing keys are all named; key or key contents required', () => {
    assert.throws(() => parseSshInfo(node({})), (e: unknown) =>
      e instanceof MissingParameterValue && /ssh_address, ssh_username, ssh_domain/.test(e.message) && /ssh_key_filename/.test(e.message));
  });
  test('passwords, option-looking hosts and bad URIs are refused', () => {
    const base = { ssh_address: '127.0.0.1', ssh_username: 'root', ssh_domain: 'd', ssh_key_filename: '/k' };
    assert.equal(parseSshInfo(node(base)).uri, 'qemu:///system');
    assert.throws(() => parseSshInfo(node({ ...base, ssh_password: 'x' })), (e: unknown) => e instanceof InvalidParameterValue && /ssh_password/.test(e.message));
    assert.throws(() => parseSshInfo(node({ ...base, ssh_address: '-oProxyCommand=x' })), /ssh_address/);
    assert.throws(() => parseSshInfo(node({ ...base, ssh_libvirt_uri: "qemu:///system' x" })), /ssh_libvirt_uri/);
    assert.throws(() => parseSshInfo(node({ ...base, ssh_virt_type: 'xen' })), /ssh_virt_type/);
  });
});
