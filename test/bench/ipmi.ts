/**
 * `npm run bench -- ipmi [--calls 200] [--ipmitool-calls 40] [--bmcs 100] [--concurrency 8]`
 *
 * Power status through the conductor's two IPMI power interfaces against the same ipmi_sim BMC (cipher suite 3):
 * `ipmitool` (a process per call) and `ipmi-native` (in-process RMCP+, one pooled session), as sequential
 * latency and calls/s. Then a power-state sync of `--bmcs` BMC endpoints (one ipmi_sim process each, record mode)
 * the way the periodic task runs it (conductor/drivers/power-sync.ts, `--concurrency` nodes in flight, like
 * Ironic's sync_power_state_workers=8) with each interface: for ipmi-native the first (cold: a session set-up per
 * BMC) and the second (warm: sessions reused, the steady state of a periodic sync) run. ipmi_sim forks its chassis
 * script for every power read, so Get Device ID (answered by ipmi_sim itself) is timed too, as the protocol's own
 * cost per call: the native session vs `ipmitool raw 0x06 0x01`. Wall-clock figures on a
 * shared machine: the CPU time of this process is printed next to them.
 * Last line: `ipmi native_status_ms=… ipmitool_status_ms=… sync100_native_s=… sync100_ipmitool_s=… …`.
 */
import { have } from '../../common/exec.js';
import { IpmiNativePower } from '../../conductor/drivers/ipmi-native.js';
import { DEFAULT_IPMITOOL_OPTIONS, IpmitoolPower, parseIpmiInfo, runIpmitool } from '../../conductor/drivers/ipmitool.js';
import { getDeviceId } from '../../conductor/ipmi-native/commands.js';
import { syncPowerState } from '../../conductor/drivers/power-sync.js';
import type { DriverNode, PowerInterface } from '../../conductor/drivers/types.js';
import { IpmiSessionPool } from '../../conductor/ipmi-native/pool.js';
import { startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';
import { numArg } from './support/args.js';

function node(i: number, info: Record<string, unknown>): DriverNode {
  return { uuid: `bench-ipmi-${i}`, driver: 'ipmi', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [], power_state: null };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ s: number; cpuS: number; value: T }> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  return { s, cpuS: (c.user + c.system) / 1e6, value };
}

async function sequential(power: PowerInterface, n: DriverNode, calls: number): Promise<{ ms: number; perS: number; cpuMs: number }> {
  if ((await power.getPowerState(n)) !== 'power off') throw new Error('warm-up: unexpected power state');
  const r = await timed(async () => {
    for (let i = 0; i < calls; i++) if ((await power.getPowerState(n)) !== 'power off') throw new Error('unexpected power state');
  });
  return { ms: (r.s * 1000) / calls, perS: calls / r.s, cpuMs: (r.cpuS * 1000) / calls };
}

async function sync(power: PowerInterface, nodes: DriverNode[], concurrency: number): Promise<{ s: number; cpuS: number }> {
  let next = 0;
  let failures = 0;
  const r = await timed(() => Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < nodes.length) {
      const n = nodes[next++] as DriverNode;
      const res = await syncPowerState(n, power, { maxRetries: 1 });
      if (res.to !== (Number(n.uuid.split('-').pop()) % 2 === 0 ? 'power on' : 'power off')) failures++;
    }
  })));
  if (failures > 0) throw new Error(`power sync: ${failures} of ${nodes.length} nodes read wrong or failed`);
  return r;
}

export default async function main(args: string[]): Promise<void> {
  const calls = numArg(args, '--calls', null, 200);
  const toolCalls = numArg(args, '--ipmitool-calls', null, 40);
  const bmcs = numArg(args, '--bmcs', null, 100);
  const concurrency = numArg(args, '--concurrency', null, 8);
  for (const t of ['ipmi_sim', 'ipmitool']) if (!(await have(t))) throw new Error(`${t} is not installed`);
  const sims: IpmiSim[] = [];
  const pool = new IpmiSessionPool({ callTimeoutMs: 20_000 });
  const timeouts = { powerStateChangeTimeoutS: 30, pollIntervalS: 0.2 };
  const native = new IpmiNativePower(pool, timeouts);
  const tool = new IpmitoolPower({ ...timeouts, minCommandIntervalS: 0, commandRetryTimeoutS: 30 });
  try {
    const first = await startIpmiSim({ password: 'bench-pw' });
    sims.push(first);
    const one = node(0, first.driverInfo());
    const n = await sequential(native, one, calls);
    console.log(`power status, one BMC, sequential: ipmi-native ${n.ms.toFixed(2)} ms/call (${n.perS.toFixed(0)} calls/s, ` +
      `${n.cpuMs.toFixed(2)} ms CPU/call in this process, ${calls} calls)`);
    const t = await sequential(tool, one, toolCalls);
    console.log(`power status, one BMC, sequential: ipmitool   ${t.ms.toFixed(2)} ms/call (${t.perS.toFixed(1)} calls/s, ${toolCalls} calls)`);
    const info = parseIpmiInfo(one);
    const s0 = pool.session({ host: '127.0.0.1', port: first.port, username: first.username, password: first.password, cipherSuite: 3, privLevel: 'ADMINISTRATOR' });
    const sent0 = s0.stats.packetsSent;
    const nd = await timed(async () => { for (let i = 0; i < calls; i++) await getDeviceId(s0); });
    const devNative = (nd.s * 1000) / calls;
    const toolOpts = { ...DEFAULT_IPMITOOL_OPTIONS, minCommandIntervalS: 0, commandRetryTimeoutS: 30 };
    const td = await timed(async () => { for (let i = 0; i < toolCalls; i++) await runIpmitool(info, ['raw', '0x06', '0x01'], toolOpts); });
    const devTool = (td.s * 1000) / toolCalls;
    console.log(`Get Device ID, one BMC, sequential: ipmi-native ${devNative.toFixed(2)} ms/call ` +
      `(${((s0.stats.packetsSent - sent0) / calls).toFixed(2)} datagrams/call), ipmitool raw ${devTool.toFixed(2)} ms/call`);

    const t0 = Date.now();
    while (sims.length < bmcs) {
      const batch = Math.min(10, bmcs - sims.length);
      sims.push(...(await Promise.all(Array.from({ length: batch }, () => startIpmiSim({ password: 'bench-pw' })))));
    }
    // Every other BMC powered on, so a sync that reads the wrong BMC or state is caught.
    for (const [i, s] of sims.entries()) await s.setPowerOutOfBand(i % 2 === 0);
    console.log(`${bmcs} ipmi_sim BMCs started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const nodes = sims.map((s, i) => node(i, s.driverInfo()));
    const cold = await sync(native, nodes, concurrency);
    const warm = await sync(native, nodes, concurrency);
    console.log(`power sync of ${bmcs} BMCs, ${concurrency} in flight: ipmi-native cold ${cold.s.toFixed(2)} s ` +
      `(a session per BMC set up), warm ${warm.s.toFixed(2)} s (${warm.cpuS.toFixed(2)} s CPU)`);
    const ts = await sync(tool, nodes, concurrency);
    console.log(`power sync of ${bmcs} BMCs, ${concurrency} in flight: ipmitool ${ts.s.toFixed(2)} s`);
    console.log(`ipmi native_status_ms=${n.ms.toFixed(2)} ipmitool_status_ms=${t.ms.toFixed(2)} sync100_native_s=${warm.s.toFixed(2)} ` +
      `sync100_ipmitool_s=${ts.s.toFixed(2)} sync100_native_cold_s=${cold.s.toFixed(2)} native_calls_s=${n.perS.toFixed(0)} ` +
      `ipmitool_calls_s=${t.perS.toFixed(1)} native_devid_ms=${devNative.toFixed(2)} ipmitool_devid_ms=${devTool.toFixed(2)} bmcs=${bmcs}`);
  } finally {
    await pool.close();
    await Promise.all(sims.map((s) => s.stop()));
  }
}
