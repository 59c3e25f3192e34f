/**
 * `npm run bench -- erase [--size-mib 1024] [--rounds 2]` (or positional `erase 1024 2`): the agent's erase paths on
 * a loop device, each against the plain tool doing the same job on the same device in the same run
 * (support/baselines.ts):
 *   - zero write: the agent's overwrite with zeros (what erase_devices does on disks without offload) vs
 *     `dd if=/dev/zero bs=4M oflag=direct`;
 *   - zero-out offload: erase_devices (WRITE ZEROES through `blkdiscard --zeroout` where the kernel offers it, as
 *     on loop devices) vs `blkdiscard --zeroout` alone;
 *   - discard: erase_devices_express (`blkdiscard` + metadata wipe) vs `blkdiscard` alone;
 *   - erase_devices with one random pass + zeros (agent_erase_devices_iterations=1), a figure with no baseline.
 * Before every timed operation but the zero writes (which find it so anyway) the device is filled by an untimed
 * zero write, so both sides of a pair start from a fully allocated backing file. Ratios are baseline seconds /
 * agent seconds (above 1: the agent is faster); a failed baseline ends the bench without them. Root only; only
 * the loop device this creates is written.
 */
import { run } from '../../common/exec.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { dispatchToManagers, loadManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import { overwriteDevice, supportsDiscard, supportsZeroOut } from '../../block/wipe.js';
import type { StepCall } from '../../hardware-managers/types.js';
import { createLoopDevices } from '../fixtures/loop.js';
import { numArg, sizeMiBArg } from './support/args.js';
import { blkdiscard, ddZero } from './support/baselines.js';

const MiB = 1024 * 1024;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const r3 = (x: number): string => x.toFixed(3);

export default async function bench(args: string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('erase bench needs root (loop devices)');
  const sizeMiB = sizeMiBArg(args, '--size-mib', 0, 1024);
  const rounds = Math.trunc(numArg(args, '--rounds', 1, 2));
  const gib = sizeMiB / 1024;
  const loops = await createLoopDevices(1, sizeMiB);
  const dev = loops.devices[0]?.path ?? '';
  try {
    setHardwareContext({ deviceAllowlist: [dev], inRamdisk: false });
    resetManagers();
    await loadManagers();
    const zeroout = supportsZeroOut(dev);
    const discard = supportsDiscard(dev);
    const call = (dii: Record<string, unknown> = {}): StepCall => ({ node: { driver_internal_info: dii }, ports: [], args: {} });
    const step = async (name: string, dii: Record<string, unknown> = {}): Promise<string> => {
      const r = await dispatchToManagers<Record<string, string>>(name, call(dii));
      const how = r[dev];
      if (!how) throw new Error(`${name} reported nothing for ${dev}: ${JSON.stringify(r)}`);
      return how;
    };
    // Untimed: brings the backing file to the allocated state every timed operation starts from.
    const fill = (): Promise<unknown> => run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=4M', `count=${sizeMiB / 4}`, 'oflag=direct', 'status=none'],
      { timeoutMs: 3600_000, quiet: true });
    const t = { dd: [] as number[], zero: [] as number[], bdz: [] as number[], erase: [] as number[], bd: [] as number[],
      express: [] as number[], shred: [] as number[] };
    let eraseHow = '';
    let expressHow = '';
    await fill();
    for (let i = 0; i < rounds; i++) {
      t.dd.push(await ddZero(dev, sizeMiB));
      t.zero.push(await timed(() => overwriteDevice(dev, sizeMiB * MiB, { randomPasses: 0, zeroize: true })));
      if (zeroout) t.bdz.push(await blkdiscard(dev, true));
      await fill();
      t.erase.push(await timed(async () => { eraseHow = await step('erase_devices'); }));
      if (discard) {
        await fill();
        t.bd.push(await blkdiscard(dev, false));
        await fill();
        t.express.push(await timed(async () => { expressHow = await step('erase_devices_express'); }));
      }
      t.shred.push(await timed(() => step('erase_devices', { agent_erase_devices_iterations: 1 })));
      const at = (xs: number[]): string => { const x = xs[i]; return x === undefined ? 'n/a' : `${r3(x)} s`; };
      console.log(`round ${i + 1} (${sizeMiB} MiB): dd zero ${at(t.dd)}, agent zero write ${at(t.zero)} | ` +
        `blkdiscard --zeroout ${at(t.bdz)}, erase_devices[${eraseHow}] ${at(t.erase)} | blkdiscard ${at(t.bd)}, ` +
        `erase_devices_express[${expressHow || 'n/a'}] ${at(t.express)} | erase_devices random+zero ${at(t.shred)}`);
    }
    const per = (xs: number[]): number => mean(xs) / gib;
    const ratio = (base: number[], ours: number[]): string => (mean(base) / mean(ours)).toFixed(2);
    console.log(`device ${dev}, ${sizeMiB} MiB, ${rounds} round(s), mean seconds per GiB (ratio = baseline / agent):`);
    console.log(`  zero write: dd if=/dev/zero bs=4M oflag=direct ${r3(per(t.dd))}, agent ${r3(per(t.zero))}, ratio ${ratio(t.dd, t.zero)}`);
    let line = `erase size_mib=${sizeMiB} rounds=${rounds} zero_write_vs_dd=${ratio(t.dd, t.zero)} ` +
      `dd_s_per_gib=${r3(per(t.dd))} zero_write_s_per_gib=${r3(per(t.zero))}`;
    // erase_devices takes the offload only where the kernel offers it; otherwise it is the zero write again.
    if (zeroout && eraseHow === 'blkdiscard --zeroout') {
      console.log(`  zero-out offload: blkdiscard --zeroout ${r3(per(t.bdz))}, erase_devices ${r3(per(t.erase))}, ratio ${ratio(t.bdz, t.erase)}`);
      line += ` zeroout_vs_blkdiscard_z=${ratio(t.bdz, t.erase)} blkdiscard_z_s_per_gib=${r3(per(t.bdz))} erase_devices_s_per_gib=${r3(per(t.erase))}`;
    } else {
      console.log(`  erase_devices [${eraseHow}] ${r3(per(t.erase))}, ratio vs dd ${ratio(t.dd, t.erase)}`);
      line += ` erase_devices_vs_dd=${ratio(t.dd, t.erase)} erase_devices_s_per_gib=${r3(per(t.erase))}`;
    }
    if (discard) {
      console.log(`  discard: blkdiscard ${r3(per(t.bd))}, erase_devices_express [${expressHow}] ${r3(per(t.express))}, ratio ${ratio(t.bd, t.express)}`);
      line += ` discard_vs_blkdiscard=${ratio(t.bd, t.express)} blkdiscard_s_per_gib=${r3(per(t.bd))} express_s_per_gib=${r3(per(t.express))}`;
    } else {
      console.log('  discard: the device does not discard, not measured');
    }
    console.log(`  erase_devices random+zero (no baseline): ${r3(per(t.shred))}`);
    console.log(`${line} random_zero_s_per_gib=${r3(per(t.shred))} method=${eraseHow.replace(/\s+/g, '_')}`);
  } finally {
    setHardwareContext({ deviceAllowlist: null });
    resetManagers();
    await loops.dispose();
  }
}
