/**
 * The end-to-end flow shared by `npm run demo` and test/e2e: conductor + image server + an IPMI-controlled QEMU
 * node (setUpLab), enroll → manage, provide (automated cleaning through the agent), deploy and wait for the
 * instance's marker on the serial console, undeploy. Every step records phase timings and reports progress.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { doneLineFor, type BuiltImage } from '../../lab/instance-image.js';
import { freePort, GUEST_HOST_ADDR } from '../../lab/qemu.js';
import { ApiError, IronicApi, waitForProvisionState, type NodeJson } from './api.js';
import { watchAgentWrite } from './agent-progress.js';
import {
  ComponentMissing,
  checkDrivers,
  findRamdisk,
  startConductorProcess,
  type ConductorHandle,
  type RamdiskFiles,
} from './components.js';
import { createLabNode, demoMac, startImageServer, type ImageServer, type LabNode } from './lab.js';
import type { PhaseTimer, Reporter } from './progress.js';
import { createRack, rackUnavailable, type Rack } from '../../lab/netns.js';
import type { Teardown } from './teardown.js';

export interface Lab {
  workDir: string;
  api: IronicApi;
  conductor: ConductorHandle;
  images: ImageServer;
  ramdisk: RamdiskFiles;
  apiPort: number;
  bootPort: number;
  httpRoot: string;
  tftpRoot: string;
  /** Rack mode: the provisioning network namespace (lab/netns.ts) and dnsmasq's lease file. */
  rack?: Rack | undefined;
  leaseFile?: string | undefined;
}

export interface LabOptions {
  workDir: string;
  /** Directory the image server publishes (instance images are built there). */
  imageDir: string;
  teardown: Teardown;
  say: (line: string) => void;
  /** Preferred API port (default 6385, a free one if taken). */
  apiPort?: number;
  /**
   * 'rack' (default for the demo): nodes on a bridge in a network namespace, DHCP/TFTP from the conductor's
   * dnsmasq; 'user': QEMU's user-mode network with guestfwd (machines without namespaces).
   */
  network?: 'rack' | 'user';
  /** Rack mode: how many nodes (TAPs) the rack gets (default 1). */
  nodes?: number;
  /** Conductor settings added to (top-level keys replacing) the demo's, e.g. more hardware types and their options. */
  extraConfig?: Record<string, unknown>;
}

async function portOrFree(preferred: number): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => void freePort().then(resolve));
    s.listen(preferred, '127.0.0.1', () => s.close(() => resolve(preferred)));
  });
}

/** `baremetal ...` with this lab's credentials, endpoint and CA: what the demo shows for trying the CLI. */
export function cliCommand(lab: Lab): string {
  const a = lab.api.credentials();
  const q = (v: string): string => (/^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
  return a
    ? `baremetal --os-auth-type http_basic --os-username ${q(a.username)} --os-password ${q(a.password)} ` +
      `--os-endpoint ${lab.api.endpoint}${a.caFile ? ` --os-cacert ${q(a.caFile)}` : ''}`
    : `baremetal --os-auth-type none --os-endpoint ${lab.api.endpoint}`;
}

/**
 * The conductor's configuration for the demo: loopback listen address, guest-facing URLs through guestfwd.
 * Authentication and TLS are the defaults (http_basic with a generated password, HTTPS with a generated CA);
 * api_url's host (the guestfwd address) is in the certificate, and the ramdisk gets the CA from the iPXE script.
 */
export function conductorConfig(workDir: string, apiPort: number, bootPort: number,
  ramdiskFiles: readonly string[] = [], rack?: Rack): Record<string, unknown> {
  const guestAddr = rack?.address ?? GUEST_HOST_ADDR;
  return {
    host: '127.0.0.1',
    port: apiPort,
    data_dir: join(workDir, 'conductor-data'),
    api_url: `https://${guestAddr}:${apiPort}`,
    automated_clean: true,
    // Heartbeats every 9-18 s instead of IPA's 90-180 s: the node waits on them between steps.
    heartbeat_timeout: 30,
    deploy_callback_timeout: 600,
    clean_callback_timeout: 600,
    // The deploy kernel/initramfs are local files: the conductor may read them only from where they are.
    file_url_allowed_paths: [...new Set(ramdiskFiles.map((f) => dirname(f)))],
    // The node fetches the image from the conductor's boot server, which caches it from our loopback URL
    // (loopback sources are refused unless allowed: the demo's image server is on 127.0.0.1).
    deploy: { image_download_source: 'http', image_cache_allow_loopback: true },
    agent: { command_wait_interval: 2, power_off_poll_interval: 2 },
    periodic: { sync_power_state_interval: 10, check_provision_state_interval: 10, reservation_cleanup_interval: 60 },
    boot: {
      http_root: join(workDir, 'httpboot'),
      http_url: `http://${guestAddr}:${bootPort}`,
      tftp_root: join(workDir, 'tftpboot'),
      listen_port: bootPort,
      kernel_append_params: 'nofb nomodeset vga=normal console=ttyS0',
    },
    // Rack: the conductor runs dnsmasq on the rack's bridge (in its namespace); entries only for booting nodes.
    // Nothing else lives on that bridge: no ping check (it holds each node's first lease back 3 s).
    ...(rack ? {
      dhcp: { provider: 'dnsmasq', manage_dnsmasq: true, namespace: rack.ns, interface: rack.bridge, range: rack.dhcpRange,
        tftp_server: rack.address, dnsmasq_user: 'root', ping_check: false },
    } : {}),
  };
}

export async function setUpLab(opts: LabOptions): Promise<Lab> {
  const { workDir, teardown, say } = opts;
  const ramdisk = await findRamdisk(say);
  say(`deploy ramdisk: agent ${ramdisk.agentVersion}${ramdisk.totalMiB ? `, ${ramdisk.totalMiB} MiB` : ''}`);
  const images = await startImageServer(opts.imageDir);
  teardown.add('image server', () => images.close());
  const apiPort = await portOrFree(opts.apiPort ?? 6385);
  const bootPort = await freePort();
  let rack: Rack | undefined;
  if (opts.network === 'rack') {
    const why = await rackUnavailable();
    if (why) throw new Error(`cannot build the lab rack: ${why} (use --user-net)`);
    rack = await createRack({ dir: workDir, taps: opts.nodes ?? 1, testRun: process.env.BMTS_TEST_RUN });
    const r = rack;
    teardown.add(`rack (namespace ${r.ns})`, () => r.destroy());
    say(`rack: namespace ${r.ns}, bridge ${r.bridge} ${r.address}/24, ${r.taps.length} TAP(s); DHCP ${r.dhcpRange} from the conductor's dnsmasq`);
  }
  const config = { ...conductorConfig(workDir, apiPort, bootPort, [ramdisk.kernel, ramdisk.initramfs], rack), ...opts.extraConfig };
  const boot = config.boot as { http_root: string; tftp_root: string };
  await mkdir(boot.http_root, { recursive: true });
  await mkdir(boot.tftp_root, { recursive: true });
  const api = new IronicApi(`https://127.0.0.1:${apiPort}`, String(config.data_dir));
  say(`starting the conductor on 127.0.0.1:${apiPort} (boot server :${bootPort}, data in ${workDir})`);
  const conductor = await startConductorProcess(config, workDir, api);
  teardown.add('conductor', () => conductor.stop());
  // Nodes reach the API and the boot server at the bridge address, through the rack's forwarder.
  if (rack) await rack.exposeToNodes([apiPort, bootPort]);
  const access = api.credentials();
  say(`API ${api.endpoint}: HTTPS (CA ${access?.caFile ?? 'none'}), http_basic user ${access?.username ?? '?'} ` +
    `(generated password in ${join(String(config.data_dir), 'admin-credentials.json')})`);
  return { workDir, api, conductor, images, ramdisk, apiPort, bootPort, httpRoot: boot.http_root, tftpRoot: boot.tftp_root,
    rack, leaseFile: rack ? join(String(config.data_dir), 'dhcp', 'dnsmasq.leases') : undefined };
}

/**
 * The image_source the conductor is given. Loopback: the conductor checks and caches it and hands the node its
 * own guest-facing URL (issue 8: images served from the conductor's HTTP server), so nothing dials 10.0.2.x.
 */
export function imageUrl(lab: Lab, file: string): string {
  return `${lab.images.localUrl}/${file}`;
}

/** instance_info for a raw image the lab's image server serves: its URL, md5 checksum and sha256 os_hash. */
export function rawImageInstanceInfo(lab: Lab, file: string, img: BuiltImage, extra: Record<string, unknown> = {}):
  Record<string, unknown> {
  return {
    image_source: imageUrl(lab, file),
    image_checksum: img.md5,
    image_os_hash_algo: 'sha256',
    image_os_hash_value: img.sha256,
    image_disk_format: 'raw',
    ...extra,
  };
}

export interface EnrolledNode {
  uuid: string;
  name: string;
  hw: LabNode;
  /** deploy_interface iscsi: the portal port, forwarded from 127.0.0.1 into the guest (driver_info.iscsi_portal_port). */
  iscsiPortalPort?: number;
}

/**
 * What the flow needs of a node: its UUID and its console (serial log) and agent port. An ipmi_sim-driven lab
 * node (EnrolledNode) is one; so is a libvirt domain driven over ssh (test/e2e/ssh-libvirt-vm.test.ts).
 */
export interface FlowNode {
  uuid: string;
  name: string;
  hw: Pick<LabNode, 'agentPort' | 'serialLog' | 'serialSince' | 'serialSize'>;
}

export interface EnrollOptions {
  ipmiInterface?: 'ipmitool' | 'ipmi-native';
  bootInterface?: 'ipxe' | 'pxe';
  firmware?: 'bios' | 'uefi';
  deployInterface?: 'direct' | 'iscsi';
  /** The node's automated_clean (default: the conductor's setting). */
  automatedClean?: boolean;
  /** Guest memory, MiB (default 1024). */
  memoryMiB?: number;
}

/** A QEMU node behind ipmi_sim, enrolled (ipmi / ipxe / direct, port with its MAC), validated, then managed. */
export async function enrollNode(lab: Lab, index: number, teardown: Teardown, reporter: Reporter,
  opts: EnrollOptions = {}): Promise<EnrolledNode> {
  const ipmi = opts.ipmiInterface ?? 'ipmitool';
  const name = `demo-node-${index}`;
  const mac = demoMac(index);
  const tap = lab.rack?.taps[index];
  if (lab.rack && !tap) throw new Error(`the rack has no TAP for node ${index}`);
  const rack = lab.rack && tap && lab.leaseFile
    ? { tap, execPrefix: lab.rack.execPrefix(), agentPort: await lab.rack.reachNode(mac, 9999, lab.leaseFile) } : undefined;
  const firmware = opts.firmware ?? 'bios';
  const deploy = opts.deployInterface ?? 'direct';
  if (deploy === 'iscsi' && rack) throw new Error('the iscsi deploy in the lab needs the user network (a hostfwd for the portal)');
  // The conductor dials the portal where it reaches the agent (its advertised 127.0.0.1): a hostfwd of the same port.
  const iscsiPortalPort = deploy === 'iscsi' ? await freePort() : undefined;
  const hw = await createLabNode({
    ...(iscsiPortalPort ? { hostPorts: [iscsiPortalPort] } : {}),
    ...(rack ? { rack } : {}),
    firmware,
    dir: lab.workDir,
    name,
    mac,
    diskMiB: 8192,
    ...(opts.memoryMiB ? { memoryMiB: opts.memoryMiB } : {}),
    guestPorts: [lab.apiPort, lab.bootPort, lab.images.port],
    tftpRoot: lab.tftpRoot,
    bootfile: 'boot.ipxe',
  });
  teardown.add(`node ${name} (VM + BMC)`, () => hw.stop());
  reporter.line(`node ${name}: QEMU VM (MAC ${hw.mac}, ${firmware === 'uefi' ? 'UEFI (OVMF)' : 'BIOS'}, 8 GiB empty disk (sparse)${rack ? `, ${rack.tap} on the rack bridge` : ''}) behind ipmi_sim on 127.0.0.1:${hw.bmc.port}/udp`);
  let node: NodeJson;
  try {
    node = await lab.api.createNode({
      name,
      driver: 'ipmi',
      boot_interface: opts.bootInterface ?? 'ipxe',
      deploy_interface: deploy,
      ...(opts.automatedClean !== undefined ? { automated_clean: opts.automatedClean } : {}),
      power_interface: ipmi,
      management_interface: ipmi,
      driver_info: {
        ...hw.bmc.driverInfo(),
        deploy_kernel: lab.ramdisk.kernel,
        deploy_ramdisk: lab.ramdisk.initramfs,
        // The conductor never dials 10.0.2.x: the agent advertises the hostfwd port on loopback.
        kernel_append_params: `nofb nomodeset vga=normal console=ttyS0 quiet ipa-advertise-host=127.0.0.1 ipa-advertise-port=${hw.agentPort}`,
        ...(iscsiPortalPort ? { iscsi_portal_port: iscsiPortalPort } : {}),
      },
      properties: { cpu_arch: 'x86_64', cpus: 1, memory_mb: opts.memoryMiB ?? 1024, local_gb: 8, capabilities: `boot_mode:${firmware}` },
    });
  } catch (e) {
    // Only a refusal naming one of the parts the demo needs counts as "not there yet"; anything else is a failure.
    if (e instanceof ApiError && e.status < 500 && /\b(ipmi|ipmitool|ipxe|direct)\b/.test(e.message) &&
      /not (enabled|found|supported|available|loaded)|unknown|no such|does not exist|invalid|supports driver/i.test(e.message)) {
      throw new ComponentMissing('ipmi hardware type with ipxe boot and direct deploy (conductor/drivers)', e.message);
    }
    throw e;
  }
  await lab.api.createPort(node.uuid, hw.mac);
  await checkDrivers(lab.api, node.uuid);
  reporter.line(`node ${name}: enrolled as ${node.uuid}; manage`);
  await lab.api.provision(node.uuid, 'manage');
  await waitForProvisionState(lab.api, node.uuid, {
    until: ['manageable'],
    failOn: ['enroll'],
    timeoutMs: 60_000,
    onPoll: (n) => reporter.node(n),
  }).catch(async (e: unknown) => {
    // A failed manage drops back to enroll; the first poll may still see enroll before verifying starts.
    const n = await lab.api.getNode(node.uuid);
    if (n.provision_state === 'manageable') return n;
    throw e;
  });
  return { uuid: node.uuid, name, hw, ...(iscsiPortalPort ? { iscsiPortalPort } : {}) };
}

function lastHeartbeat(n: NodeJson): string | undefined {
  const d = n.driver_internal_info;
  const v = d.agent_last_heartbeat ?? d.agent_url;
  return v === undefined || v === null ? undefined : String(v);
}

/** provide: automated cleaning through the agent until `available`. Phases: boot to lookup, cleaning. */
export async function provideNode(lab: Lab, node: FlowNode, reporter: Reporter, timer: PhaseTimer, label = ''): Promise<NodeJson> {
  const before = lastHeartbeat(await lab.api.getNode(node.uuid));
  const bootPhase = `boot to lookup${label}`;
  const cleanPhase = `cleaning${label}`;
  timer.start(bootPhase);
  await lab.api.provision(node.uuid, 'provide');
  return waitForProvisionState(lab.api, node.uuid, {
    until: ['available'],
    failOn: ['clean failed'],
    timeoutMs: 600_000,
    onPoll: (n) => {
      reporter.node(n);
      const hb = lastHeartbeat(n);
      if (!timer.ended(bootPhase) && hb !== undefined && hb !== before) {
        timer.end(bootPhase);
        timer.start(cleanPhase);
      }
      if (n.provision_state === 'available') {
        timer.end(bootPhase);
        if (timer.has(cleanPhase)) timer.end(cleanPhase);
      }
    },
  });
}

export interface DeployRequest {
  instanceInfo: Record<string, unknown>;
  configdrive?: string;
  /** Size of what the agent writes, for the progress bar. */
  imageBytes?: number;
  /** The line the instance prints; waited for on the serial console after `active`. */
  markerLine: string;
}

/** deploy → active → instance marker on the serial console. Phases: boot to lookup, image write, reboot to instance. */
export async function deployNode(lab: Lab, node: FlowNode, req: DeployRequest, reporter: Reporter, timer: PhaseTimer): Promise<string> {
  await lab.api.patchNode(node.uuid, { instance_info: req.instanceInfo });
  const before = lastHeartbeat(await lab.api.getNode(node.uuid));
  const serialStart = node.hw.serialSize();
  timer.start('deploy boot to lookup');
  await lab.api.provision(node.uuid, 'active', req.configdrive ? { configdrive: req.configdrive } : {});
  const watcher = watchAgentWrite(
    node.hw.agentPort,
    (written, total) => reporter.bytes(written, total ?? req.imageBytes),
    () => node.hw.serialSince(serialStart).text,
  );
  try {
    await waitForProvisionState(lab.api, node.uuid, {
      until: ['active'],
      failOn: ['deploy failed'],
      timeoutMs: 600_000,
      onPoll: (n) => {
        reporter.node(n);
        const hb = lastHeartbeat(n);
        if (!timer.ended('deploy boot to lookup') && hb !== undefined && hb !== before) timer.end('deploy boot to lookup');
        const step = typeof n.deploy_step.step === 'string' ? n.deploy_step.step : undefined;
        if (step === 'write_image' && !timer.has('image write')) {
          timer.end('deploy boot to lookup');
          timer.start('image write');
          watcher.start();
        }
        if (timer.has('image write') && !timer.ended('image write') && step !== 'write_image') {
          timer.end('image write');
          watcher.stop();
          reporter.endBytes();
          timer.start('reboot to instance');
        }
      },
    });
  } finally {
    watcher.stop();
    reporter.endBytes();
  }
  if (!timer.has('reboot to instance')) timer.start('reboot to instance');
  reporter.line(`node ${node.name}: active; waiting for the instance to boot from its disk`);
  const line = await waitForSerialLine(node.hw, serialStart, req.markerLine, 300_000);
  timer.end('reboot to instance');
  reporter.line(`node ${node.name}: instance says "${line}"`);
  // The instance reports its config drive after the marker: the serial text is whole once its last line is there.
  await waitForSerialLine(node.hw, serialStart, doneLineFor(req.markerLine), 60_000);
  return node.hw.serialSince(serialStart).text;
}

/** Wait for a line starting with `prefix` in the node's serial output written after `offset`. */
export async function waitForSerialLine(hw: FlowNode['hw'], offset: number, prefix: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { text } = hw.serialSince(offset);
    const line = text.split('\n').map((l) => l.trim()).find((l) => l.startsWith(prefix));
    if (line) return line;
    if (/No bootable device|Boot failed: not a bootable disk|could not read the boot disk/.test(text)) {
      throw new Error(`the node did not boot from its disk (serial: ${hw.serialLog})`);
    }
    if (Date.now() > deadline) throw new Error(`no "${prefix}" on the serial console within ${timeoutMs / 1000} s (serial: ${hw.serialLog})`);
    await sleep(500);
  }
}

/** undeploy: active → deleting → cleaning → available. */
export async function undeployNode(lab: Lab, node: FlowNode, reporter: Reporter, timer: PhaseTimer): Promise<NodeJson> {
  timer.start('undeploy (teardown + cleaning)');
  await lab.api.provision(node.uuid, 'deleted');
  const n = await waitForProvisionState(lab.api, node.uuid, {
    until: ['available'],
    failOn: ['clean failed', 'error'],
    timeoutMs: 600_000,
    onPoll: (x) => reporter.node(x),
  });
  timer.end('undeploy (teardown + cleaning)');
  return n;
}
