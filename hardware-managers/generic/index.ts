/**
 * GenericHardwareManager: what every Linux machine supports. Step methods carry
 * IPA's step names (erase_devices, write_image, ...) because dispatch looks steps up by name; helper methods
 * (listHardwareInfo, getOsInstallDevice, listBlockDevices, ...) are camelCase.
 */
import { existsSync } from 'node:fs';
import type { AgentStep } from '../../protocol/agent-api.js';
import { writeImageStep } from '../deploy/deploy-step.js';
import { have, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { hardwareContext } from '../context.js';
import { HardwareSupport, type HardwareManager, type StepCall } from '../types.js';
import { listBlockDevices } from '../../block/devices.js';
import { eraseBlockDevice, eraseDevices, eraseDevicesExpress, eraseDevicesMetadata } from './erase.js';
import { genericFlashFirmware, updateFirmware } from './firmware.js';
import {
  getBmcInfo, getBootInfo, getCpus, getMemory, getSystemVendorInfo, listHardwareInfo, listNetworkInterfaces,
} from './inventory.js';
import { applyConfiguration, createConfiguration, deleteConfiguration } from './raid.js';
import { getOsInstallDevice } from './root-device.js';
import { errorMessage } from '../../common/errors.js';
import { collectLldpData, getUsbDevices } from './inventory-extra.js';

const log = getLogger('generic-manager');

const RAID_APPLY_ARGSINFO = {
  raid_config: { description: 'The RAID configuration to apply.', required: true },
  delete_existing: {
    description:
      "Setting this to 'True' indicates to delete existing RAID configuration prior to creating the new configuration. Default value is 'True'.",
    required: false,
  },
};

const clean = (step: string, priority: number, iface = 'deploy'): AgentStep => ({
  step, priority, interface: iface, reboot_requested: false, abortable: true,
});
const deploy = (step: string, priority: number, iface = 'deploy', argsinfo?: AgentStep['argsinfo']): AgentStep => ({
  step, priority, interface: iface, reboot_requested: false, ...(argsinfo ? { argsinfo } : {}),
});

export const GENERIC_CLEAN_STEPS: readonly AgentStep[] = [
  clean('erase_devices', 10),
  clean('erase_devices_metadata', 99),
  clean('erase_devices_express', 0),
  clean('delete_configuration', 0, 'raid'),
  clean('create_configuration', 0, 'raid'),
];

export const GENERIC_DEPLOY_STEPS: readonly AgentStep[] = [
  deploy('erase_devices_metadata', 0),
  deploy('apply_configuration', 0, 'raid', RAID_APPLY_ARGSINFO),
  deploy('write_image', 0),
];

export const GENERIC_SERVICE_STEPS: readonly AgentStep[] = [
  deploy('delete_configuration', 0, 'raid'),
  deploy('apply_configuration', 0, 'raid', RAID_APPLY_ARGSINFO),
  deploy('create_configuration', 0, 'raid'),
  deploy('write_image', 0),
];

const copy = (steps: readonly AgentStep[]): AgentStep[] => steps.map((s) => ({ ...s }));

export const genericManager: HardwareManager = {
  name: 'GenericHardwareManager',
  versionName: 'generic_hardware_manager',
  version: '1.2',

  evaluateHardwareSupport: () => HardwareSupport.GENERIC,

  /**
   * In the ramdisk, assemble existing md arrays so they can be listed, kept, deleted or deployed to (as IPA does).
   * --config=partitions: scan every partition whatever the ramdisk's mdadm.conf says (its "AUTO -all" forbids
   * exactly this auto-assembly).
   */
  async initialize(): Promise<void> {
    if (!hardwareContext().inRamdisk || !existsSync('/proc/mdstat') || !(await have('mdadm'))) return;
    try {
      await run('mdadm', ['--assemble', '--scan', '--config=partitions'], { timeoutMs: 120_000, okCodes: [0, 1, 2] });
    } catch (e) {
      log.warn({ err: errorMessage(e) }, 'mdadm --assemble --scan failed');
    }
  },

  getCleanSteps: () => copy(GENERIC_CLEAN_STEPS),
  getDeploySteps: () => copy(GENERIC_DEPLOY_STEPS),
  getServiceSteps: () => copy(GENERIC_SERVICE_STEPS),

  // Steps (names as IPA's; the conductor asks for them by name).
  erase_devices: eraseDevices,
  erase_devices_metadata: eraseDevicesMetadata,
  erase_devices_express: eraseDevicesExpress,
  erase_block_device: eraseBlockDevice,
  create_configuration: createConfiguration,
  delete_configuration: deleteConfiguration,
  apply_configuration: applyConfiguration,
  write_image: (call: StepCall) => writeImageStep(call),
  update_firmware: updateFirmware,
  flash_firmware: genericFlashFirmware,

  // Inventory pieces and helpers.
  listHardwareInfo,
  getCpus,
  getMemory,
  listNetworkInterfaces,
  getSystemVendorInfo,
  getBootInfo,
  getBmcInfo,
  listBlockDevices,
  getOsInstallDevice,
  getUsbDevices: () => getUsbDevices(),
  collectLldpData: (opts?: { timeoutS?: number }) => collectLldpData(opts),

  /** standby.sync / run_image: flush everything to the disks. */
  async full_sync(): Promise<void> {
    await run('sync', [], { timeoutMs: 300_000 });
  },
};
