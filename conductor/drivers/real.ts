/**
 * The real hardware types (`ipmi`, `redfish`) and their interfaces (`ipmitool`, `redfish`, `ipxe`), plus the
 * services they need at run time (the boot server). `registerRealDrivers(reg)` registers default-configured
 * instances (listed in builtin.ts); `startDriverServices(config, reg)` — called by main.ts for each conductor —
 * re-registers them with that conductor's configuration and starts its boot server when boot.http_root is set.
 */
import { getLogger } from '../../common/logger.js';
import { join, resolve, sep } from 'node:path';
import { ConfigError } from '../../common/errors.js';
import { startBootServer, type BootServer } from '../boot-server.js';
import { allowedFileDirs } from '../file-access.js';
import type { ConductorConfig } from '../config.js';
import type { DriverRegistry } from './index.js';
import { IpmiSessionPool } from '../ipmi-native/pool.js';
import { IpmiNativeManagement, IpmiNativePower, type IpmiNativeOptions } from './ipmi-native.js';
import { IpmitoolManagement, IpmitoolPower, type IpmitoolOptions } from './ipmitool.js';
import { IpxeBoot } from './ipxe.js';
import { PxeBoot } from './pxe.js';
import { startDhcpProvider, type DhcpProvider } from '../dhcp/index.js';
import type { BootDhcp } from './boot-dhcp.js';
import { RedfishManagement, RedfishPower, type RedfishOptions } from './redfish.js';
import { RedfishClientPool } from './redfish-client.js';
import { RedfishBios } from './redfish-bios.js';
import { registerSshVirt } from './ssh-virt.js';
import type { InterfaceKind } from './types.js';
import { createRedfishInspect } from '../inspection/redfish-inspect.js';

const log = getLogger('drivers');

function common(power: string, management: string, inspect: string[] = []): Partial<Record<InterfaceKind, string[]>> {
  return {
    bios: ['no-bios'],
    // `fake` boot/deploy stay available for tests that have a real BMC but no network.
    boot: ['ipxe', 'pxe', 'fake'],
    console: ['no-console'],
    deploy: ['direct', 'iscsi', 'fake'],
    // Ironic's order: out-of-band (redfish) first, then in-band `agent` (conductor/inspection/), then none.
    inspect: [...inspect, 'agent', 'no-inspect'],
    management: [management],
    network: ['noop', 'flat'],
    power: [power],
    raid: ['no-raid'],
    rescue: ['no-rescue'],
    storage: ['noop'],
    vendor: ['no-vendor'],
  };
}

function registerInstances(reg: DriverRegistry, ipmi: Partial<IpmitoolOptions>, redfish: Partial<RedfishOptions>,
  ipxe: IpxeBoot, pool: RedfishClientPool, ipmiPool: IpmiSessionPool, pxe: PxeBoot): void {
  reg.registerInterface('power', new IpmitoolPower(ipmi));
  reg.registerInterface('management', new IpmitoolManagement(ipmi));
  const native: Partial<IpmiNativeOptions> = { ...ipmi };
  reg.registerInterface('power', new IpmiNativePower(ipmiPool, native));
  reg.registerInterface('management', new IpmiNativeManagement(ipmiPool, native));
  reg.registerInterface('power', new RedfishPower(redfish, pool));
  reg.registerInterface('management', new RedfishManagement(redfish, pool));
  reg.registerInterface('bios', new RedfishBios(redfish, pool));
  reg.registerInterface('boot', ipxe);
  reg.registerInterface('boot', pxe);
}

export function registerRealDrivers(reg: DriverRegistry): void {
  // Unconfigured ipxe: validate() says which boot.* settings are missing.
  registerInstances(reg, {}, {}, new IpxeBoot({ httpRoot: '', httpUrl: '' }), new RedfishClientPool(), new IpmiSessionPool(),
    new PxeBoot({ tftpRoot: '' }));
  reg.registerHardwareType({
    name: 'ipmi',
    supported: { ...common('ipmitool', 'ipmitool'), power: ['ipmitool', 'ipmi-native'], management: ['ipmitool', 'ipmi-native'] },
  });
  // Ironic's redfish hardware type: bios redfish (the default) or no-bios.
  reg.registerHardwareType({ name: 'redfish', supported: { ...common('redfish', 'redfish', ['redfish']), bios: ['redfish', 'no-bios'] } });
  registerSshVirt(reg);
}

export interface DriverServices {
  /** The boot server, when boot.http_root is configured (image cache for deploys: bootServer.cacheImage). */
  bootServer: BootServer | undefined;
  /** The DHCP provider (conductor/dhcp/), `none` unless dhcp.provider is set. */
  dhcp: DhcpProvider;
  close(): Promise<void>;
}

export async function startDriverServices(cfg: ConductorConfig, reg: DriverRegistry): Promise<DriverServices> {
  const p = cfg.power;
  // deploy.default_boot_mode belongs to the deploy settings; read loosely so this file doesn't depend on them.
  const defaultBootMode = (cfg as { deploy?: { default_boot_mode?: 'bios' | 'uefi' } }).deploy?.default_boot_mode ?? 'bios';
  const ipmi: Partial<IpmitoolOptions> = {
    commandRetryTimeoutS: p.ipmi_command_retry_timeout, minCommandIntervalS: p.ipmi_min_command_interval,
    powerStateChangeTimeoutS: p.state_change_timeout, softPowerOffTimeoutS: p.soft_power_off_timeout, defaultBootMode,
  };
  const redfish: Partial<RedfishOptions> = {
    connectionAttempts: p.redfish_connection_attempts, connectionRetryIntervalS: p.redfish_connection_retry_interval,
    powerStateChangeTimeoutS: p.state_change_timeout, softPowerOffTimeoutS: p.soft_power_off_timeout, defaultBootMode,
  };
  let bootServer: BootServer | undefined;
  let ipxe = new IpxeBoot({ httpRoot: '', httpUrl: '' });
  const dhcpProvider = await startDhcpProvider(cfg);
  const dhcp: BootDhcp | undefined = dhcpProvider.name === 'none' ? undefined : {
    provider: dhcpProvider, tftpServer: cfg.dhcp.tftp_server ?? '', defaultBootMode,
    uefiIpxeBootFile: cfg.dhcp.uefi_ipxe_bootfile,
  };
  let pxe = new PxeBoot({ tftpRoot: '' });
  try {
    if (cfg.boot.tftp_root) {
      pxe = new PxeBoot({ tftpRoot: resolve(cfg.boot.tftp_root), kernelAppendParams: cfg.boot.kernel_append_params,
        allowedFileDirs: allowedFileDirs(cfg), dhcp, defaultBootMode });
      if (dhcp) await pxe.writeBootFiles();
    }
    if (cfg.boot.http_root) {
      const httpRoot = resolve(cfg.boot.http_root);
      const dataDir = resolve(cfg.data_dir);
      // Everything under http_root is public: it must not hold the database (BMC passwords, agent tokens).
      if (dataDir === httpRoot || dataDir.startsWith(httpRoot + sep)) {
        throw new ConfigError(`boot.http_root ${httpRoot} must not contain data_dir ${dataDir}: the boot server publishes it`);
      }
      const allowLoopback = cfg.deploy.image_cache_allow_loopback;
      bootServer = await startBootServer({
        httpRoot, host: cfg.boot.listen_host, port: cfg.boot.listen_port ?? 0, allowLoopback,
        ...(cfg.boot.http_url ? { httpUrl: cfg.boot.http_url } : {}),
      });
      const bs = bootServer;
      ipxe = new IpxeBoot({
        httpRoot: bs.httpRoot, httpUrl: bs.httpUrl, tftpRoot: cfg.boot.tftp_root,
        kernelAppendParams: cfg.boot.kernel_append_params, cacheImage: (u) => bs.cacheImage(u),
        allowedFileDirs: allowedFileDirs(cfg), allowLoopback, dhcp,
      });
      await ipxe.writeBootScripts();
      if (!cfg.boot.http_url) log.warn({ httpUrl: bs.httpUrl }, 'boot.http_url not set: nodes are told the loopback boot server URL');
    }
  } catch (e) {
    // dnsmasq (and the boot server) must not outlive a conductor that failed to start.
    await bootServer?.close();
    await dhcpProvider.close();
    throw e;
  }
  const pool = new RedfishClientPool();
  // One IPMI session per BMC for this conductor; a call's budget is [power]ipmi_command_retry_timeout.
  const ipmiPool = new IpmiSessionPool({ callTimeoutMs: p.ipmi_command_retry_timeout * 1000 });
  registerInstances(reg, ipmi, redfish, ipxe, pool, ipmiPool, pxe);
  registerSshVirt(reg, {
    knownHostsFile: cfg.ssh.known_hosts_file ?? join(resolve(cfg.data_dir), 'ssh', 'known_hosts'),
    trustOnFirstUse: cfg.ssh.trust_on_first_use, commandTimeoutS: cfg.ssh.command_timeout,
    powerStateChangeTimeoutS: p.state_change_timeout,
  });
  reg.registerInterface('inspect', createRedfishInspect(redfish, pool, () => cfg));
  return {
    bootServer,
    dhcp: dhcpProvider,
    close: async () => {
      await ipmiPool.close();
      await pool.close();
      await bootServer?.close();
      await dhcpProvider.close();
    },
  };
}
