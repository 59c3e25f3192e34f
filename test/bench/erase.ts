/**
 * `npm run bench -- erase [sizeMiB] [rounds]`: how long erase_devices takes per GiB on a loop device, against
 * `dd if=/dev/zero of=LOOP bs=4M oflag=direct` on the same device in the same run. Three agent paths are timed:
 * the default erase_devices (zero-out offload where the kernel offers it, as on loop devices), the plain zero
 * overwrite the agent falls back to on disks without offload, and erase_devices with one random pass + zeros
 * (agent_erase_devices_iterations=1). Root only; only the loop device this creates is written.
 */
import { run } from '../../common/exec.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { dispatchToManagers, loadManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import { overwriteDevice } from '../../block/wipe.js';
import type { StepCall } from '../../hardware-managers/types.js';
import { createLoopDevices } from '../fixtures/loop.js';

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
  const sizeMiB = Number(args[0] ?? 1024);
  const rounds = Math.max(1, Number(args[1] ?? 2));
  const gib = sizeMiB / 1024;
  const loops = await createLoopDevices(1, sizeMiB);
  const dev = loops.devices[0]?.path ?? '';
  try {
    setHardwareContext({ deviceAllowlist: [dev], inRamdisk: false });
    resetManagers();
    await loadManagers();
    const call = (dii: Record<string, unknown> = {}): StepCall => ({ node: { driver_internal_info: dii }, ports: [], args: {} });
    const t = { dd: [] as number[], erase: [] as number[], overwrite: [] as number[], shred: [] as number[] };
    let method = '';
    for (let i = 0; i < rounds; i++) {
      t.dd.push(await timed(() => run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=4M', `count=${sizeMiB / 4}`, 'oflag=direct', 'status=none'])));
      t.overwrite.push(await timed(() => overwriteDevice(dev, sizeMiB * MiB, { randomPasses: 0, zeroize: true })));
      t.erase.push(await timed(async () => {
        const r = await dispatchToManagers<Record<string, string>>('erase_devices', call());
        method = r[dev] ?? '?';
      }));
      t.shred.push(await timed(() => dispatchToManagers('erase_devices', call({ agent_erase_devices_iterations: 1 }))));
      console.log(`round ${i + 1}: dd ${r3(t.dd[i] ?? 0)} s, overwrite(zero) ${r3(t.overwrite[i] ?? 0)} s, ` +
        `erase_devices[${method}] ${r3(t.erase[i] ?? 0)} s, erase_devices(random+zero) ${r3(t.shred[i] ?? 0)} s for ${sizeMiB} MiB`);
    }
    const per = (xs: number[]): number => mean(xs) / gib;
    console.log(`device ${dev}, ${sizeMiB} MiB, ${rounds} round(s), mean seconds per GiB:`);
    console.log(`  dd if=/dev/zero bs=4M oflag=direct : ${r3(per(t.dd))}`);
    console.log(`  erase_devices (${method})      : ${r3(per(t.erase))}`);
    console.log(`  agent zero overwrite (fallback)    : ${r3(per(t.overwrite))}`);
    console.log(`  erase_devices random+zero          : ${r3(per(t.shred))}`);
    console.log(
      `erase size_mib=${sizeMiB} rounds=${rounds} dd_s_per_gib=${r3(per(t.dd))} erase_devices_s_per_gib=${r3(per(t.erase))} ` +
        `overwrite_s_per_gib=${r3(per(t.overwrite))} random_zero_s_per_gib=${r3(per(t.shred))} ` +
        `overwrite_vs_dd=${(per(t.overwrite) / per(t.dd)).toFixed(2)} erase_vs_dd=${(per(t.erase) / per(t.dd)).toFixed(3)} method=${method.replace(/\s+/g, '_')}`,
    );
  } finally {
    setHardwareContext({ deviceAllowlist: null });
    resetManagers();
    await loops.dispose();
  }
}
