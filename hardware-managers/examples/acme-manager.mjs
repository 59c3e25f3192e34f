/**
 * AcmeHardwareManager: the worked example of a vendor hardware-manager plugin (see README.md next to this file).
 *
 * A plain ES module, no build step. Its default export is a factory: the agent calls it with `api` (support
 * levels, error classes, dispatch, the exec wrapper, the disk safety guard, a logger) so the plugin needs no import
 * path into the agent.
 *
 * What it shows:
 *  - recognising its hardware (DMI system vendor "ACME", or ACME_HW=1 for tests) and claiming MAINLINE support;
 *  - overriding a generic step (erase_devices) with its own implementation;
 *  - adding a clean step of its own (acme_apply_bios_profile, priority 45);
 *  - supplying firmware flashers (flash_firmware_bios / flash_firmware_bmc) for the generic update_firmware step,
 *    which downloads and verifies the image first;
 *  - leaving everything else (erase_devices_metadata, root device, inventory, ...) to the generic manager.
 */
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export default function createAcmeManager(api) {
  const { HardwareSupport, errors, run, disks, getLogger } = api;
  const log = getLogger('acme-manager');

  /** Where the (fake) flash memory and BIOS profile live: a directory the test chooses. */
  const stateDir = () => process.env.ACME_STATE_DIR || '/var/lib/acme';

  async function isAcme() {
    if (process.env.ACME_HW === '1') return true;
    try {
      return (await readFile('/sys/class/dmi/id/sys_vendor', 'utf8')).trim() === 'ACME';
    } catch {
      return false;
    }
  }

  /** A flasher receives the verified image at call.args.image_path (plus component, url, checksum). */
  async function flash(component, call) {
    const dir = call.args.target_dir || join(stateDir(), 'flash');
    await mkdir(dir, { recursive: true });
    const target = join(dir, `${component}.rom`);
    await copyFile(call.args.image_path, target);
    const { size } = await stat(target);
    log.info({ component, target, size }, 'ACME firmware flashed');
    return { flashed: component, target, bytes: size };
  }

  return {
    name: 'AcmeHardwareManager',
    versionName: 'acme_hardware_manager',
    version: '1.0',

    // Called once at load. Do not dispatch from here: the managers are not loaded yet.
    async evaluateHardwareSupport() {
      return (await isAcme()) ? HardwareSupport.MAINLINE : HardwareSupport.NONE;
    },

    getCleanSteps() {
      return [
        // Same name as the generic step: being MAINLINE, this one wins de-duplication and dispatch.
        { step: 'erase_devices', priority: 10, interface: 'deploy', reboot_requested: false, abortable: true },
        {
          step: 'acme_apply_bios_profile', priority: 45, interface: 'deploy', reboot_requested: false, abortable: false,
          argsinfo: { profile: { description: 'BIOS profile name (default: performance)', required: false } },
        },
        {
          step: 'update_firmware', priority: 0, interface: 'deploy', reboot_requested: true, abortable: false,
          argsinfo: { components: { description: 'List of {component, url, checksum}', required: true } },
        },
      ];
    },

    /** ACME drives erase instantly through the controller; modelled here with the kernel's zero-out. */
    async erase_devices(call) {
      const results = {};
      // listDisksForNode leaves out what the node's skip list protects.
      for (const d of await disks.listDisksForNode(call.node)) {
        if (d.type.startsWith('raid')) continue;
        await disks.assertSafeToWrite(d.name);
        await run('blkdiscard', ['--zeroout', d.name], { timeoutMs: 3600_000 });
        results[d.name] = 'acme controller erase';
        call.progress?.({ device: d.name, step: 'erase_devices', by: 'AcmeHardwareManager' });
      }
      return results;
    },

    async acme_apply_bios_profile(call) {
      const profile = call.args.profile ?? 'performance';
      if (typeof profile !== 'string' || !/^[a-z0-9-]+$/.test(profile)) {
        throw new errors.InvalidCommandParamsError(`invalid BIOS profile ${JSON.stringify(profile)}`);
      }
      await mkdir(stateDir(), { recursive: true });
      await writeFile(join(stateDir(), 'bios-profile'), `${profile}\n`);
      return { profile };
    },

    flash_firmware_bios: (call) => flash('bios', call),
    flash_firmware_bmc: (call) => flash('bmc', call),
  };
}
