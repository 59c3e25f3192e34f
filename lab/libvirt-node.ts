/**
 * A lab node that is a libvirt domain (issue 20, the `ssh` hardware type deployed end to end): the domain XML for
 * a TCG guest on one of the lab rack's TAPs (lab/netns.ts), with an empty sparse disk and its serial console
 * appended to a file, and the serial helpers the demo flow reads the node's console with.
 *  - The NIC is `<interface type='ethernet'>` on an existing TAP (managed='no'): libvirtd runs inside the rack's
 *    namespace (lab/libvirt.ts execPrefix), so the QEMU it spawns opens the TAP there; no address or bridge of
 *    libvirt's own, nothing outside the namespace.
 *  - QEMU runs as root with no relabelling (a static DAC seclabel): the disk and logs stay in the test's private
 *    0700 temp dir, as the ipmi_sim-driven lab nodes' do, and libvirt never chowns a file.
 *  - SeaBIOS mirrors its console (and iPXE's) to the serial port only when fw_cfg etc/sercon-port names it;
 *    libvirt has no element for that file, so it goes through <qemu:commandline>.
 *  - Boot order lives in <os> (network, then disk): the driver edits it over ssh, effective at the next start.
 */
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serialLogReader } from './qemu.js';

export interface LibvirtNodeOptions {
  dir: string;
  /** Domain name. */
  name: string;
  mac: string;
  /** The rack TAP the NIC opens (in the namespace libvirtd runs in). */
  tap: string;
  diskMiB: number;
  memoryMiB?: number;
}

export interface LibvirtNode {
  name: string;
  mac: string;
  disk: string;
  serialLog: string;
  /** The domain XML to define. */
  xml: string;
  readSerial(): string;
  /** Serial text written since `offset` (bytes of the raw log), and the new offset. */
  serialSince(offset: number): { text: string; offset: number };
  serialSize(): number;
}

function xmlAttr(v: string): string {
  return v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

/** The domain XML (exported for tests of the fixture itself). */
export function libvirtNodeXml(o: { name: string; mac: string; tap: string; disk: string; serialLog: string; sercon: string; memoryMiB: number }): string {
  if (!/^[A-Za-z0-9_-]+$/.test(o.tap)) throw new Error(`bad TAP name ${o.tap}`);
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(o.mac)) throw new Error(`bad MAC ${o.mac}`);
  // QEMU splits -fw_cfg on commas: a comma in the path would become another option.
  if (o.sercon.includes(',')) throw new Error(`comma in ${o.sercon}`);
  return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${xmlAttr(o.name)}</name>
  <memory unit='MiB'>${o.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='network'/>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${xmlAttr(o.disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='${o.mac}'/>
      <target dev='${o.tap}' managed='no'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='${xmlAttr(o.serialLog)}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-fw_cfg'/>
    <qemu:arg value='name=etc/sercon-port,file=${xmlAttr(o.sercon)}'/>
  </qemu:commandline>
</domain>
`;
}

/** Creates the node's files (sparse disk, serial log, sercon-port) and its domain XML; defining it is the caller's. */
export async function createLibvirtNode(opts: LibvirtNodeOptions): Promise<LibvirtNode> {
  const disk = join(opts.dir, `${opts.name}-disk.img`);
  await writeFile(disk, '');
  await truncate(disk, opts.diskMiB * 1024 * 1024);
  const serialLog = join(opts.dir, `${opts.name}-serial.log`);
  await writeFile(serialLog, '');
  const sercon = join(opts.dir, `${opts.name}-sercon-port.bin`);
  await writeFile(sercon, Buffer.from([0xf8, 0x03, 0, 0, 0, 0, 0, 0])); // COM1 (0x3f8), little-endian u64
  const xml = libvirtNodeXml({ name: opts.name, mac: opts.mac, tap: opts.tap, disk, serialLog, sercon, memoryMiB: opts.memoryMiB ?? 1024 });
  return {
    name: opts.name,
    mac: opts.mac,
    disk,
    serialLog,
    xml,
    ...serialLogReader(serialLog),
  };
}
