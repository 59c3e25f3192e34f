/**
 * A TCP relay between a lab VM's serial port and ipmi_sim's Serial-over-LAN. ipmi_sim (`sol "tcp:HOST:PORT"`)
 * connects to its device once, when it starts, and never again; the VM comes and goes with every power cycle.
 * So the relay listens on two loopback ports: `bmcPort` for ipmi_sim's one long-lived connection and `vmPort` for
 * the VM (a QEMU socket chardev in client mode), and copies bytes both ways while both are there. Bytes with no
 * one on the other side are dropped, like a serial line with nothing attached.
 */
import { createServer, type Server, type Socket } from 'node:net';

export interface SerialRelay {
  bmcPort: number;
  vmPort: number;
  /** Resolves once ipmi_sim has connected (rejects after timeoutMs). */
  bmcConnected(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
}

export async function startSerialRelay(): Promise<SerialRelay> {
  let bmc: Socket | undefined;
  let vm: Socket | undefined;
  const waiters: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const bmcServer = createServer((s) => {
    track(s);
    bmc?.destroy();
    bmc = s;
    s.on('data', (d) => { if (vm && !vm.destroyed) vm.write(d); });
    s.on('close', () => { if (bmc === s) bmc = undefined; });
    for (const w of waiters.splice(0)) w();
  });
  const vmServer = createServer((s) => {
    track(s);
    vm?.destroy();
    vm = s;
    s.on('data', (d) => { if (bmc && !bmc.destroyed) bmc.write(d); });
    s.on('close', () => { if (vm === s) vm = undefined; });
  });
  const bmcPort = await listen(bmcServer);
  const vmPort = await listen(vmServer);
  return {
    bmcPort,
    vmPort,
    bmcConnected: (timeoutMs) => new Promise<void>((resolve, reject) => {
      if (bmc) return resolve();
      const t = setTimeout(() => reject(new Error(`ipmi_sim did not connect its SoL to 127.0.0.1:${bmcPort}`)), timeoutMs);
      waiters.push(() => { clearTimeout(t); resolve(); });
    }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([bmcServer, vmServer].map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    },
  };
}

/**
 * The VM's argument list with its serial port on the relay: `-serial file:X` (or none) becomes a socket chardev
 * connecting to 127.0.0.1:vmPort that also logs to X (`logfile`, appended: every power-on's output stays), so
 * serial.log keeps working.
 */
export function solQemuArgs(args: readonly string[], vmPort: number, defaultLog: string): string[] {
  const out: string[] = [];
  let log = defaultLog;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '-serial') {
      const v = args[++i] ?? '';
      if (v.startsWith('file:')) log = v.slice('file:'.length);
      continue;
    }
    out.push(a);
  }
  if (log.includes(',')) throw new Error(`solQemuArgs: comma in serial log path ${log}`);
  out.push('-chardev', `socket,id=sol0,host=127.0.0.1,port=${vmPort},server=off,logfile=${log},logappend=on`, '-serial', 'chardev:sol0');
  return out;
}
