/**
 * The DHCP provider interface (Ironic's ironic/dhcp/base.py idea): the boot interfaces hand it the boot options
 * of a node's pxe-enabled ports when the node is prepared for a ramdisk boot, and take them away afterwards, so
 * only nodes being provisioned get boot options. `none` is for sites whose own DHCP server does the job.
 */
import type { DriverNode } from '../drivers/types.js';

/** One DHCP option for a node, as Ironic passes them: `opt_name` may carry dnsmasq tag filters (`tag:!ipxe,67`). */
export interface DhcpOption {
  opt_name: string;
  opt_value: string;
  ip_version: 4 | 6;
}

export interface DhcpProvider {
  readonly name: string;
  /** Whether iPXE clients are tagged `ipxe` (dhcp-match=set:ipxe,175), so options may filter on it. */
  supportsIpxeTag(): boolean;
  /** Boot options for the node's pxe-enabled ports; replaces what the node had. */
  updateDhcpOpts(node: DriverNode, options: readonly DhcpOption[]): Promise<void>;
  /** The node's ports get no boot options any more (and no lease, where the provider can refuse one). */
  cleanDhcpOpts(node: DriverNode): Promise<void>;
  /** Addresses leased to the node's pxe-enabled ports, where the provider knows them. */
  getIpAddresses(node: DriverNode): Promise<string[]>;
  close(): Promise<void>;
}
