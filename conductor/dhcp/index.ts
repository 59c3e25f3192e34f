/**
 * The configured DHCP provider of one conductor (config `dhcp.provider`), started by startDriverServices.
 */
import { resolve } from 'node:path';
import { ConfigError } from '../../common/errors.js';
import type { ConductorConfig } from '../config.js';
import { DnsmasqDhcp } from './dnsmasq.js';
import { NoneDhcp } from './none.js';
import type { DhcpProvider } from './types.js';

export type { DhcpOption, DhcpProvider } from './types.js';

export async function startDhcpProvider(cfg: ConductorConfig): Promise<DhcpProvider> {
  const d = cfg.dhcp;
  if (d.provider === 'none') return new NoneDhcp();
  if (!d.range) throw new ConfigError('dhcp.provider dnsmasq needs dhcp.range (start,end[,lease time])');
  if (!d.tftp_server) throw new ConfigError('dhcp.provider dnsmasq needs dhcp.tftp_server (the address nodes reach the conductor at)');
  const p = new DnsmasqDhcp({
    dir: resolve(d.dir ?? resolve(cfg.data_dir, 'dhcp')), interface: d.interface, range: d.range,
    tftpRoot: cfg.boot.tftp_root ? resolve(cfg.boot.tftp_root) : undefined, allowUnknown: d.allow_unknown,
    manage: d.manage_dnsmasq, namespace: d.namespace, binary: d.dnsmasq_binary, externalPidFile: d.pid_file,
    pidFile: d.pid_file, user: d.dnsmasq_user, pingCheck: d.ping_check,
  });
  await p.start();
  return p;
}
