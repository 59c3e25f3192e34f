/**
 * The cheapest node that talks on its serial console: the host's kernel with a busybox initramfs whose /init
 * prints a few boot lines and then runs an interactive shell on ttyS0 (so a keystroke sent over Serial-over-LAN
 * comes back as output). Console tests boot it behind ipmi_sim with SoL (lab/ipmi-sim.ts `sol: true`).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { buildQemuArgs } from './qemu.js';
import { cpioNewc, findHostKernel, type CpioEntry } from './instance-image.js';

export const CONSOLE_NODE_BOOTED = 'CONSOLE-NODE-BOOTED';

function init(): string {
  return `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/ttyS0 >/dev/ttyS0 2>&1
stty -F /dev/ttyS0 115200 2>/dev/null
echo "console-node: kernel $(uname -r) up $(cut -d' ' -f1 /proc/uptime) s"
for i in 1 2 3; do echo "console-node: boot line $i"; done
echo "${CONSOLE_NODE_BOOTED}"
export PS1='console-node# '
while true; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; done
`;
}

/** Writes the initramfs (gzip'd newc) to `out`. */
export async function buildConsoleInitramfs(out: string): Promise<string> {
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys'].map((name) => ({ name, mode: 0o040755 })),
    { name: 'dev/console', mode: 0o020600, rdev: [5, 1] },
    { name: 'bin/busybox', mode: 0o100755, data: await readFile('/bin/busybox') },
    { name: 'init', mode: 0o100755, data: Buffer.from(init()) },
  ];
  await writeFile(out, gzipSync(cpioNewc(entries), { level: 6 }));
  return out;
}

/** QEMU arguments (for ipmi_sim's chassis script) booting that initramfs with its console on ttyS0. */
export async function consoleNodeQemuArgs(initrd: string, serialLog: string): Promise<string[]> {
  const k = await findHostKernel();
  return buildQemuArgs({ kernel: k.vmlinuz, initrd, append: 'console=ttyS0,115200 quiet', memoryMiB: 256, noReboot: true },
    serialLog);
}
