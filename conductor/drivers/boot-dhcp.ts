/**
 * What the pxe and ipxe boot interfaces share about DHCP: the provider, the address nodes reach TFTP at, and
 * the node's boot mode, which picks the boot file (Ironic's dhcp_options_for_instance per node).
 */
import { bootOptionsFor } from '../dhcp/options.js';
import type { DhcpProvider } from '../dhcp/types.js';
import { bootModeOf } from '../orchestration/image-info.js';
import type { DriverNode } from './types.js';

export interface BootDhcp {
  provider: DhcpProvider;
  /** Address nodes reach the conductor's TFTP server at. */
  tftpServer: string;
  defaultBootMode: 'bios' | 'uefi';
  /** UEFI boot file of the ipxe interface (snponly.efi or ipxe.efi). */
  uefiIpxeBootFile?: string | undefined;
}

export function nodeBootMode(node: DriverNode, fallback: 'bios' | 'uefi'): 'bios' | 'uefi' {
  return bootModeOf({ uuid: node.uuid, instance_info: node.instance_info, properties: node.properties }, fallback);
}

/** Write the node's boot options (its ramdisk boot is about to start). */
export async function enableDhcp(d: BootDhcp | undefined, node: DriverNode, bootInterface: 'pxe' | 'ipxe',
  httpUrl?: string): Promise<void> {
  if (!d) return;
  const bootMode = nodeBootMode(node, d.defaultBootMode);
  const bootFile = bootInterface === 'ipxe' && bootMode === 'uefi' ? d.uefiIpxeBootFile : undefined;
  await d.provider.updateDhcpOpts(node, bootOptionsFor({ bootInterface, bootMode, tftpServer: d.tftpServer, httpUrl,
    ipxeTag: d.provider.supportsIpxeTag(), bootFile }));
}

export async function disableDhcp(d: BootDhcp | undefined, node: DriverNode): Promise<void> {
  if (d) await d.provider.cleanDhcpOpts(node);
}
