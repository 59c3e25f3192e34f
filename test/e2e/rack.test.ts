/**
 * The lab rack end to end (issue 17): a BIOS QEMU node on a bridge in a network namespace, DHCP/TFTP from the
 * conductor-managed dnsmasq, the API and boot server reached at the bridge address. Cleaning boots the ramdisk
 * with the `pxe` boot interface (PXE ROM -> pxelinux.0 -> kernel/initramfs over TFTP), the deploy with `ipxe`
 * (iPXE -> boot.ipxe and the ramdisk over HTTP); then the node boots its new disk. All the while the node's
 * dnsmasq host entry is live only in ramdisk states; afterwards no namespace, link or process is left.
 * Only missing host tools or a machine without network namespaces skip (scripts/test.sh fails skips under CI).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { have, run } from '../../common/exec.js';
import { buildInstanceInitramfs, buildWholeDiskImage, missingImageTools } from '../../lab/instance-image.js';
import { rackUnavailable } from '../../lab/netns.js';
import { freePort } from '../../lab/qemu.js';
import { deployNode, enrollNode, imageUrl, provideNode, setUpLab, type EnrolledNode, type Lab } from '../../scripts/demo/flow.js';
import { createReporter, PhaseTimer } from '../../scripts/demo/progress.js';
import { Teardown } from '../../scripts/demo/teardown.js';

const RAMDISK_STATES = new Set(['cleaning', 'clean wait', 'deploying', 'wait call-back']);

async function missing(): Promise<string | undefined> {
  const m = await missingImageTools();
  for (const t of ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'dnsmasq', 'ip']) if (!(await have(t))) m.push(t);
  if (!existsSync('/usr/lib/PXELINUX/pxelinux.0')) m.push('pxelinux');
  if (m.length) return `missing tools: ${m.join(', ')}`;
  return rackUnavailable();
}

/** Processes whose command line mentions `dir` (dnsmasq, QEMU, forwarders, conductor of this lab). */
function processesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) out.push(`${pid} ${cmd.slice(0, 120)}`);
    } catch { /* exited */ }
  }
  return out;
}

test('e2e rack: BIOS node, pxe cleaning, ipxe deploy, disk boot; DHCP entries only in ramdisk states; nothing left', { timeout: 20 * 60_000 }, async (t) => {
  const why = await missing();
  if (why) {
    t.skip(why);
    return;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-rack-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  const teardown = new Teardown();
  const reporter = createReporter({ tty: false, out: { write: (s: string) => { t.diagnostic(s.trimEnd()); return true; }, isTTY: false } as unknown as NodeJS.WriteStream });
  const timer = new PhaseTimer();
  let lab: Lab | undefined;
  let node: EnrolledNode | undefined;
  let ok = false;
  t.after(async () => {
    for (const f of await teardown.run()) t.diagnostic(`teardown: ${f}`);
    if (ok) await rm(workDir, { recursive: true, force: true });
    else t.diagnostic(`kept for inspection: ${workDir} (serial: ${node?.hw.serialLog ?? 'n/a'}, conductor log: ${lab?.conductor.logFile ?? 'n/a'})`);
  });

  const initramfs = await buildInstanceInitramfs(join(imageDir, 'instance-initrd.gz'));
  const whole = await buildWholeDiskImage({ dir: imageDir, initramfs, sizeMiB: 32 });
  lab = await setUpLab({ workDir, imageDir, teardown, say: (l) => reporter.line(l), apiPort: await freePort(), network: 'rack', nodes: 1 });
  const l = lab;
  const rack = l.rack;
  assert.ok(rack, 'rack mode builds a namespace');
  // SAFETY: the rack's addresses exist only inside its namespace.
  const rootAddrs = (await run('ip', ['-o', 'addr', 'show'], { quiet: true })).stdout;
  assert.ok(!rootAddrs.includes(`${rack.address}/`), 'the bridge address leaked into the root namespace');
  const nsAddrs = (await run('ip', ['netns', 'exec', rack.ns, 'ip', '-o', 'addr', 'show', 'dev', rack.bridge], { quiet: true })).stdout;
  assert.match(nsAddrs, new RegExp(`inet ${rack.address.replace(/\./g, '\\.')}/24`));

  node = await enrollNode(l, 0, teardown, reporter, { bootInterface: 'pxe' });
  const n = node;
  const dhcpDir = join(workDir, 'conductor-data', 'dhcp');
  const hostFile = join(dhcpDir, 'hostsdir', `ironic-${n.hw.mac}.conf`);
  const entryLive = async (): Promise<boolean> => /set:ironic/.test(await readFile(hostFile, 'utf8').catch(() => ''));
  assert.equal(await entryLive(), false, 'a manageable node has no DHCP entry');

  // Sample (state, entry) all along: a live entry outside the ramdisk states is a failure.
  const seenLive = new Set<string>();
  const violations: string[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const before = (await l.api.getNode(n.uuid).catch(() => undefined))?.provision_state;
      const live = await entryLive();
      const after = (await l.api.getNode(n.uuid).catch(() => undefined))?.provision_state;
      if (live && before && after) {
        if (RAMDISK_STATES.has(before) || RAMDISK_STATES.has(after)) seenLive.add(RAMDISK_STATES.has(before) ? before : after);
        else if (before === after) violations.push(`entry live in state ${before}`);
      }
      await sleep(500);
    }
  })();

  try {
    await provideNode(l, n, reporter, timer);
    assert.match(n.hw.readSerial(), /PXELINUX/i, `cleaning booted through PXELINUX (serial: ${n.hw.serialLog})`);
    assert.equal(await entryLive(), false, 'cleaning done: the entry is gone');
    await l.api.patchNode(n.uuid, { boot_interface: 'ipxe' });
    const serial = await deployNode(l, n, {
      instanceInfo: { image_source: imageUrl(l, 'whole-disk.img'), image_checksum: whole.md5, image_os_hash_algo: 'sha256',
        image_os_hash_value: whole.sha256, image_disk_format: 'raw' },
      imageBytes: whole.sizeBytes, markerLine: whole.markerLine,
    }, reporter, timer);
    assert.match(serial, new RegExp(`^${whole.markerLine} variant=whole-disk`, 'm'));
    assert.match(serial, /boot\.ipxe/, 'the deploy ramdisk came through iPXE');
  } finally {
    sampling = false;
    await sampler;
  }
  assert.deepEqual(violations, []);
  assert.ok(seenLive.size > 0, 'the DHCP entry was live while the node booted its ramdisk');
  assert.equal(await entryLive(), false, 'active: the entry is gone');
  assert.deepEqual(readdirSync(join(dhcpDir, 'optsdir')), [], 'no per-node options left');
  t.diagnostic(`rack phase timings:\n${timer.table()}`);
  t.diagnostic(`e2e-rack ${timer.figures()}`);

  // Nothing left behind: namespace (and with it bridge and TAPs), dnsmasq, QEMU, forwarders.
  for (const f of await teardown.run()) assert.fail(`teardown: ${f}`);
  const list = (await run('ip', ['netns', 'list'], { quiet: true })).stdout;
  assert.ok(!list.split('\n').some((x) => x.split(' ')[0] === rack.ns), `namespace ${rack.ns} still there`);
  await sleep(500);
  assert.deepEqual(processesUnder(workDir), []);
  ok = true;
});
