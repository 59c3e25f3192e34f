/**
 * The lab rack end to end (issue 17): QEMU nodes on a bridge in a network namespace, DHCP/TFTP from the
 * conductor-managed dnsmasq, the API and boot server reached at the bridge address. Two nodes at once:
 *  - BIOS (SeaBIOS): cleaning boots the ramdisk with the `pxe` boot interface (PXE ROM -> pxelinux.0 ->
 *    kernel/initramfs over TFTP), the deploy with `ipxe` (iPXE -> boot.ipxe and the ramdisk over HTTP); then the
 *    node boots its new MBR disk.
 *  - UEFI (OVMF, boot_mode uefi): both ramdisk boots go OVMF PXE -> snponly.efi over TFTP (dnsmasq tags the
 *    client-arch option 93) -> boot.ipxe over HTTP -> ramdisk; the deploy writes a GPT whole-disk image with an
 *    ESP, the agent adds a UEFI boot entry with efibootmgr, and OVMF boots that NVRAM entry afterwards.
 * They run side by side, so the UEFI scenario costs little extra wall time. All the while each node's dnsmasq host
 * entry is live only in ramdisk states; afterwards no namespace, link or process is left.
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
import { buildInstanceInitramfs, buildUefiWholeDiskImage, buildWholeDiskImage, missingImageTools, missingUefiImageTools } from '../../lab/instance-image.js';
import { rackUnavailable } from '../../lab/netns.js';
import { freePort, OVMF_CODE, OVMF_VARS } from '../../lab/qemu.js';
import { deployNode, enrollNode, imageUrl, provideNode, setUpLab, type EnrolledNode, type Lab } from '../../scripts/demo/flow.js';
import { PhaseTimer } from '../../scripts/demo/progress.js';
import { Teardown } from '../../scripts/demo/teardown.js';
import { diagnosticReporter, processesUnder } from '../fixtures/e2e-scenarios.js';

const RAMDISK_STATES = new Set(['cleaning', 'clean wait', 'deploying', 'wait call-back']);

async function missing(): Promise<string | undefined> {
  const m = [...await missingImageTools(), ...await missingUefiImageTools()];
  for (const t of ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'dnsmasq', 'ip']) if (!(await have(t))) m.push(t);
  if (!existsSync('/usr/lib/PXELINUX/pxelinux.0')) m.push('pxelinux');
  if (!existsSync('/usr/lib/ipxe/snponly.efi')) m.push('ipxe (snponly.efi)');
  for (const f of [OVMF_CODE, OVMF_VARS]) if (!existsSync(f)) m.push(`ovmf (${f})`);
  if (m.length) return `missing tools: ${m.join(', ')}`;
  return rackUnavailable();
}

test('e2e rack: BIOS node (pxe cleaning, ipxe deploy) and UEFI node (OVMF, snponly.efi, efibootmgr) deploy and boot from disk; DHCP entries only in ramdisk states; nothing left', { timeout: 20 * 60_000 }, async (t) => {
  const why = await missing();
  if (why) {
    t.skip(why);
    return;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-rack-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  const teardown = new Teardown();
  const reporter = diagnosticReporter(t);
  const timer = new PhaseTimer();
  const uefiTimer = new PhaseTimer();
  let lab: Lab | undefined;
  let node: EnrolledNode | undefined;
  let uefiNode: EnrolledNode | undefined;
  let ok = false;
  t.after(async () => {
    for (const f of await teardown.run()) t.diagnostic(`teardown: ${f}`);
    if (ok) await rm(workDir, { recursive: true, force: true });
    else t.diagnostic(`kept for inspection: ${workDir} (serial: ${node?.hw.serialLog ?? 'n/a'}, ${uefiNode?.hw.serialLog ?? 'n/a'}, conductor log: ${lab?.conductor.logFile ?? 'n/a'})`);
  });

  const initramfs = await buildInstanceInitramfs(join(imageDir, 'instance-initrd.gz'));
  const whole = await buildWholeDiskImage({ dir: imageDir, initramfs, sizeMiB: 32 });
  const uefiWhole = await buildUefiWholeDiskImage({ dir: imageDir, initramfs, sizeMiB: 32 });
  lab = await setUpLab({ workDir, imageDir, teardown, say: (l) => reporter.line(l), apiPort: await freePort(), network: 'rack', nodes: 2 });
  const l = lab;
  const rack = l.rack;
  assert.ok(rack, 'rack mode builds a namespace');
  // SAFETY: the rack's addresses exist only inside its namespace.
  const rootAddrs = (await run('ip', ['-o', 'addr', 'show'], { quiet: true })).stdout;
  assert.ok(!rootAddrs.includes(`${rack.address}/`), 'the bridge address leaked into the root namespace');
  const nsAddrs = (await run('ip', ['netns', 'exec', rack.ns, 'ip', '-o', 'addr', 'show', 'dev', rack.bridge], { quiet: true })).stdout;
  assert.match(nsAddrs, new RegExp(`inet ${rack.address.replace(/\./g, '\\.')}/24`));

  node = await enrollNode(l, 0, teardown, reporter, { bootInterface: 'pxe' });
  uefiNode = await enrollNode(l, 1, teardown, reporter, { bootInterface: 'ipxe', firmware: 'uefi' });
  const n = node;
  const u = uefiNode;
  const dhcpDir = join(workDir, 'conductor-data', 'dhcp');
  const entryLive = async (x: EnrolledNode): Promise<boolean> =>
    /set:ironic/.test(await readFile(join(dhcpDir, 'hostsdir', `ironic-${x.hw.mac}.conf`), 'utf8').catch(() => ''));
  for (const x of [n, u]) assert.equal(await entryLive(x), false, `a manageable node (${x.name}) has no DHCP entry`);

  // Sample (state, entry) all along: a live entry outside the ramdisk states is a failure.
  const seenLive = new Map<string, Set<string>>([[n.name, new Set()], [u.name, new Set()]]);
  const violations: string[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const x of [n, u]) {
        const before = (await l.api.getNode(x.uuid).catch(() => undefined))?.provision_state;
        const live = await entryLive(x);
        const after = (await l.api.getNode(x.uuid).catch(() => undefined))?.provision_state;
        if (live && before && after) {
          if (RAMDISK_STATES.has(before) || RAMDISK_STATES.has(after)) seenLive.get(x.name)?.add(RAMDISK_STATES.has(before) ? before : after);
          else if (before === after) violations.push(`${x.name}: entry live in state ${before}`);
        }
      }
      await sleep(500);
    }
  })();

  const biosFlow = async (): Promise<void> => {
    await provideNode(l, n, reporter, timer);
    assert.match(n.hw.readSerial(), /PXELINUX/i, `cleaning booted through PXELINUX (serial: ${n.hw.serialLog})`);
    assert.equal(await entryLive(n), false, 'cleaning done: the entry is gone');
    await l.api.patchNode(n.uuid, { boot_interface: 'ipxe' });
    const serial = await deployNode(l, n, {
      instanceInfo: { image_source: imageUrl(l, 'whole-disk.img'), image_checksum: whole.md5, image_os_hash_algo: 'sha256',
        image_os_hash_value: whole.sha256, image_disk_format: 'raw' },
      imageBytes: whole.sizeBytes, markerLine: whole.markerLine,
    }, reporter, timer);
    assert.match(serial, new RegExp(`^${whole.markerLine} variant=whole-disk `, 'm'));
    assert.match(serial, /boot\.ipxe/, 'the deploy ramdisk came through iPXE');
  };
  const uefiFlow = async (): Promise<void> => {
    await provideNode(l, u, reporter, uefiTimer, ' (uefi)');
    assert.equal(await entryLive(u), false, 'UEFI cleaning done: the entry is gone');
    const serial = await deployNode(l, u, {
      instanceInfo: { image_source: imageUrl(l, 'uefi-disk.img'), image_checksum: uefiWhole.md5, image_os_hash_algo: 'sha256',
        image_os_hash_value: uefiWhole.sha256, image_disk_format: 'raw' },
      imageBytes: uefiWhole.sizeBytes, markerLine: uefiWhole.markerLine,
    }, reporter, uefiTimer);
    assert.match(serial, new RegExp(`^${uefiWhole.markerLine} variant=whole-disk-uefi `, 'm'));
    // OVMF names the boot option it starts: the one the agent wrote with efibootmgr, not a fallback to the disk.
    assert.match(serial, /BdsDxe: starting Boot[0-9A-F]{4} "baremetal-ts"/, `OVMF booted the agent's NVRAM entry (serial: ${u.hw.serialLog})`);
    const all = u.hw.readSerial();
    assert.match(all, /iPXE/, 'the UEFI ramdisk boots came through iPXE');
    assert.match(all, /boot\.ipxe/, 'iPXE fetched the boot script over HTTP');
  };

  try {
    const results = await Promise.allSettled([biosFlow(), uefiFlow()]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  } finally {
    sampling = false;
    await sampler;
  }
  assert.deepEqual(violations, []);
  for (const x of [n, u]) {
    assert.ok((seenLive.get(x.name)?.size ?? 0) > 0, `the DHCP entry of ${x.name} was live while it booted its ramdisk`);
    assert.equal(await entryLive(x), false, `${x.name} active: the entry is gone`);
  }
  assert.deepEqual(readdirSync(join(dhcpDir, 'optsdir')), [], 'no per-node options left');
  // dnsmasq matched the UEFI client's architecture (option 93) and served it the EFI iPXE over TFTP.
  const dnsmasqLog = readFileSync(join(dhcpDir, 'dnsmasq.log'), 'utf8');
  assert.match(dnsmasqLog, /sent \S*snponly\.efi to/, 'dnsmasq sent snponly.efi over TFTP');
  assert.match(dnsmasqLog, /sent \S*undionly\.kpxe to|sent \S*pxelinux\.0 to/, 'dnsmasq sent the BIOS loaders over TFTP');
  t.diagnostic(`UEFI node phase timings:\n${uefiTimer.table()}`);
  t.diagnostic(`e2e-rack-uefi ${uefiTimer.figures()}`);
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
