/**
 * The boot options a node's ports get, per firmware, as Ironic's pxe_utils.dhcp_options_for_instance builds them:
 *   ipxe boot interface: legacy BIOS PXE ROM -> undionly.kpxe over TFTP; UEFI -> snponly.efi (or ipxe.efi) over
 *     TFTP; a client that already is iPXE (it sends option 175, dnsmasq tags it `ipxe`) gets the boot script URL.
 *   pxe boot interface: BIOS -> pxelinux.0, UEFI -> bootx64.efi (GRUB), both over TFTP.
 * Plus the TFTP server as options 66 and 150 and dnsmasq's 255 (server-ip-address, the siaddr field PXE ROMs
 * read as their TFTP server).
 */
import type { DhcpOption } from './types.js';

/** Option numbers (RFC 2132, RFC 5859, iPXE's encapsulated options, dnsmasq's server-ip-address). */
export const DHCP_TFTP_SERVER_NAME = '66';
export const DHCP_BOOTFILE_NAME = '67';
export const DHCP_TFTP_SERVER_ADDRESS = '150';
export const DHCP_IPXE_ENCAP_OPTS = '175';
export const DHCP_SERVER_IP_ADDRESS = '255';

/** Boot file names, Ironic's [pxe] defaults. */
export const BOOT_FILES = {
  pxe: { bios: 'pxelinux.0', uefi: 'bootx64.efi' },
  ipxe: { bios: 'undionly.kpxe', uefi: 'snponly.efi' },
} as const;

export interface BootOptionsInput {
  bootInterface: 'pxe' | 'ipxe';
  bootMode: 'bios' | 'uefi';
  /** Address of the TFTP server the nodes reach (the provisioning network side of the conductor). */
  tftpServer: string;
  /** Guest-facing boot server base URL (iPXE: <httpUrl>/boot.ipxe). */
  httpUrl?: string | undefined;
  /** The provider tags iPXE clients (dnsmasq with dhcp-match=set:ipxe,175). */
  ipxeTag: boolean;
  /** Override the boot file (e.g. ipxe.efi instead of snponly.efi for UEFI firmware without SNP). */
  bootFile?: string | undefined;
}

export function bootOptionsFor(i: BootOptionsInput): DhcpOption[] {
  const bootFile = i.bootFile ?? BOOT_FILES[i.bootInterface][i.bootMode];
  // A DHCP boot-file field is 128 bytes; Ironic refuses more than 64 for Neutron's sake, and so do we.
  if (bootFile.length > 64) throw new Error(`DHCP boot file name longer than 64 characters: ${bootFile}`);
  const opts: Array<Omit<DhcpOption, 'ip_version'>> = [];
  if (i.bootInterface === 'ipxe') {
    if (!i.httpUrl) throw new Error('the ipxe boot interface needs the boot server URL for its DHCP options');
    const script = `${i.httpUrl.replace(/\/+$/, '')}/boot.ipxe`;
    if (i.ipxeTag) {
      opts.push({ opt_name: `tag:!ipxe,${DHCP_BOOTFILE_NAME}`, opt_value: bootFile });
      opts.push({ opt_name: `tag:ipxe,${DHCP_BOOTFILE_NAME}`, opt_value: script });
    } else {
      // ISC-style: !175 means "not iPXE".
      opts.push({ opt_name: `!${DHCP_IPXE_ENCAP_OPTS},${DHCP_BOOTFILE_NAME}`, opt_value: bootFile });
      opts.push({ opt_name: DHCP_BOOTFILE_NAME, opt_value: script });
    }
  } else {
    opts.push({ opt_name: DHCP_BOOTFILE_NAME, opt_value: bootFile });
  }
  opts.push({ opt_name: DHCP_TFTP_SERVER_NAME, opt_value: i.tftpServer });
  opts.push({ opt_name: DHCP_TFTP_SERVER_ADDRESS, opt_value: i.tftpServer });
  opts.push({ opt_name: DHCP_SERVER_IP_ADDRESS, opt_value: i.tftpServer });
  return opts.map((o) => ({ ...o, ip_version: 4 }));
}
