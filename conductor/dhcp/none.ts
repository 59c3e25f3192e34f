/**
 * The `none` DHCP provider: the site's own DHCP server hands out the boot options (next-server and a boot file
 * pointing at this conductor's TFTP/HTTP boot files), so the conductor writes nothing.
 */
import type { DhcpProvider } from './types.js';

export class NoneDhcp implements DhcpProvider {
  readonly name = 'none';
  supportsIpxeTag(): boolean { return false; }
  async updateDhcpOpts(): Promise<void> { /* the site's DHCP server is configured out of band */ }
  async cleanDhcpOpts(): Promise<void> { /* nothing was written */ }
  async getIpAddresses(): Promise<string[]> { return []; }
  async close(): Promise<void> { /* nothing runs */ }
}
