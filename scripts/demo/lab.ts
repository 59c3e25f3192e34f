/**
 * The demo's "bare-metal" hardware: a QEMU VM with an empty virtio disk behind an ipmi_sim BMC on loopback
 * (power on starts QEMU, power off kills it), network-booting on QEMU's restricted user network. The guest
 * reaches host services only through guestfwd rules at 10.0.2.100 (conductor API, boot server, image server);
 * the host reaches the agent only through a hostfwd port on 127.0.0.1. Also the loopback image server.
 */
import { createReadStream } from 'node:fs';
import { copyFile, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join, resolve, sep } from 'node:path';
import { buildQemuArgs, freePort, GUEST_HOST_ADDR, OVMF_VARS, serialLogReader } from '../../lab/qemu.js';
import { daemonizableQemuArgs, startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';

export interface LabNodeOptions {
  dir: string;
  name: string;
  mac: string;
  diskMiB: number;
  /** Number of (sparse, empty) virtio disks of diskMiB each (default 1): `${name}-disk.img`, `${name}-disk2.img`, ... */
  disks?: number;
  memoryMiB?: number;
  /** Host loopback ports the guest may reach (each gets a guestfwd rule at 10.0.2.100:PORT). */
  guestPorts: number[];
  /**
   * Guest ports the host may reach at the same port on 127.0.0.1 (hostfwd), besides the agent's API: the iscsi
   * deploy's portal, which the agent binds at the port the conductor sends.
   */
  hostPorts?: number[];
  /**
   * Rack mode (lab/netns.ts): the VM's NIC is this TAP in the rack's namespace (QEMU runs under `ip netns exec`),
   * DHCP/TFTP come from the conductor's dnsmasq, and the agent is reached at `agentPort` through the rack.
   */
  rack?: { tap: string; execPrefix: string[]; agentPort: number };
  /** UEFI firmware (OVMF) instead of SeaBIOS. */
  firmware?: 'bios' | 'uefi';
  /** slirp TFTP root + DHCP bootfile (a TFTP name or an http:// URL). */
  tftpRoot?: string;
  bootfile: string;
  /**
   * Serial-over-LAN (lab/ipmi-sim.ts `sol`): the VM's serial port is also ipmi_sim's SoL, so the conductor's
   * ipmitool consoles can read and type on it. The serial log still collects every power-on.
   */
  sol?: boolean;
}

export interface LabNode {
  name: string;
  mac: string;
  /** 127.0.0.1 port forwarded to the agent's 9999 in the guest (ipa-advertise-port). */
  agentPort: number;
  disk: string;
  /** Every disk file, `disk` first. */
  disks: string[];
  /** Serial console of every power-on of this node, appended (survives power cycles). */
  serialLog: string;
  bmc: IpmiSim;
  /** Serial log with terminal escapes removed. */
  readSerial(): string;
  /** Serial text written since `offset` (bytes of the raw log), and the new offset. */
  serialSince(offset: number): { text: string; offset: number };
  serialSize(): number;
  stop(): Promise<void>;
}

export async function createLabNode(opts: LabNodeOptions): Promise<LabNode> {
  const disks = Array.from({ length: opts.disks ?? 1 }, (_, i) => join(opts.dir, `${opts.name}-disk${i ? i + 1 : ''}.img`));
  for (const d of disks) {
    await writeFile(d, '');
    await truncate(d, opts.diskMiB * 1024 * 1024);
  }
  const disk = disks[0] as string;
  const serialLog = join(opts.dir, `${opts.name}-serial.log`);
  await writeFile(serialLog, '');
  const agentPort = opts.rack?.agentPort ?? await freePort();
  let uefiVars: string | undefined;
  if (opts.firmware === 'uefi') {
    uefiVars = join(opts.dir, `${opts.name}-OVMF_VARS.fd`);
    await copyFile(OVMF_VARS, uefiVars);
  }
  // SeaBIOS mirrors its console (and iPXE's, and "Boot failed"/"No bootable device") to the serial port only
  // when fw_cfg etc/sercon-port names it; QEMU sets that for -nographic, which can't be combined with -daemonize.
  const sercon = join(opts.dir, 'sercon-port.bin');
  await writeFile(sercon, Buffer.from([0xf8, 0x03, 0, 0, 0, 0, 0, 0]));
  const base = buildQemuArgs(
    {
      boot: 'disk',
      memoryMiB: opts.memoryMiB ?? 1024,
      mac: opts.mac,
      // UEFI: no iPXE option ROM on the NIC, as on a real machine: OVMF's own virtio-net driver and PXE client ask
      // DHCP with client-arch 7 and chain-load snponly.efi over TFTP. (With efi-virtio.rom, iPXE's EFI driver would
      // answer the DHCP as iPXE and fetch boot.ipxe directly, skipping the firmware's part of the chain.)
      pxeRom: opts.firmware !== 'uefi',
      noReboot: false,
      disks: disks.map((file) => ({ file, format: 'raw' as const })),
      ...(opts.rack ? { tap: opts.rack.tap } : {
        guestfwd: opts.guestPorts.map((p) => ({ guestPort: p })),
        hostfwd: [{ hostPort: agentPort, guestPort: 9999 }, ...(opts.hostPorts ?? []).map((p) => ({ hostPort: p, guestPort: p }))],
        ...(opts.tftpRoot ? { tftp: opts.tftpRoot } : {}),
        bootfile: opts.bootfile,
      }),
      ...(uefiVars ? { firmware: 'uefi' as const, uefiVars } : {}),
      extraArgs: ['-fw_cfg', `name=etc/sercon-port,file=${sercon}`],
    },
    serialLog,
  );
  // -serial file: truncates on every power-on; the demo wants the cleaning boot's log next to the deploy's.
  // With SoL, startIpmiSim turns -serial file: into a socket chardev that appends to the same log.
  const args = opts.sol ? daemonizableQemuArgs(base) : daemonizableQemuArgs(base).flatMap((a, i, all) => {
    if (a === '-serial') return [];
    if (all[i - 1] === '-serial') return ['-chardev', `file,id=ser0,path=${serialLog},append=on`, '-serial', 'chardev:ser0'];
    return [a];
  });
  const [binary, ...prefix] = opts.rack ? [...opts.rack.execPrefix, 'qemu-system-x86_64'] : ['qemu-system-x86_64'];
  const bmc = await startIpmiSim({ qemu: { args: [...prefix, ...args], binary }, ...(opts.sol ? { sol: true } : {}) });
  return {
    name: opts.name,
    mac: opts.mac,
    agentPort,
    disk,
    disks,
    serialLog,
    bmc,
    ...serialLogReader(serialLog),
    stop: () => bmc.stop(),
  };
}

export interface ImageServer {
  /** Loopback base URL (what the conductor may fetch). */
  localUrl: string;
  /** Guest-facing base URL through the guestfwd rule (what the node fetches). */
  guestUrl: string;
  port: number;
  /** Bytes sent per path, for "the node downloaded it" checks. */
  sent: Map<string, number>;
  close(): Promise<void>;
}

/**
 * Static files from `root` on 127.0.0.1 with Content-Length and keep-alive (the agent's Node 20 HTTP client
 * must not meet Connection: close, see agent/image/download.ts), HEAD and Range for resumed downloads.
 */
export async function startImageServer(root: string): Promise<ImageServer> {
  const sent = new Map<string, number>();
  const base = resolve(root);
  const server: Server = createServer((req, res) => {
    void (async () => {
      const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
      const file = resolve(base, name);
      if (!file.startsWith(base + sep) || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 404 : 405).end();
        return;
      }
      let size: number;
      try {
        const st = await stat(file);
        if (!st.isFile()) throw new Error('not a file');
        size = st.size;
      } catch {
        res.writeHead(404, { 'Content-Length': 0 }).end();
        return;
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = range ? Number(range[1]) : 0;
      if (start > size) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      const headers = {
        'Content-Type': 'application/octet-stream',
        'Content-Length': size - start,
        'Accept-Ranges': 'bytes',
        ...(range ? { 'Content-Range': `bytes ${start}-${size - 1}/${size}` } : {}),
      };
      res.writeHead(range ? 206 : 200, headers);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const stream = createReadStream(file, { start });
      stream.on('data', (c) => sent.set(basename(file), (sent.get(basename(file)) ?? 0) + c.length));
      stream.pipe(res);
    })();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    localUrl: `http://127.0.0.1:${port}`,
    guestUrl: `http://${GUEST_HOST_ADDR}:${port}`,
    port,
    sent,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Locally administered, stable per index: 52:54:00:ba:4e:NN. */
export function demoMac(index: number): string {
  return `52:54:00:ba:4e:${(index & 0xff).toString(16).padStart(2, '0')}`;
}
