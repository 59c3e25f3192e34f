/**
 * The `fake-hardware` hardware type: interfaces that touch no hardware, like Ironic's drivers/modules/fake.py.
 * Fake power reports back the state the conductor last recorded; fake deploy goes straight to active and fake
 * cleaning has no steps, so `provide` and `undeploy` finish at once.
 */
import { InvalidParameterValue } from '../errors.js';
import { fakeBios, runBiosStep } from './bios.js';
import type { DeployInterface, DriverRegistry, InspectInterface, RaidInterface, RescueInterface } from './index.js';
import type { BootDevice, BootInterface, DriverInterface, DriverNode, ManagementInterface, NodeBootMode, PowerInterface,
  PowerState, PowerTarget, SupportedIndicators } from './types.js';

const SUPPORTED_POWER: PowerTarget[] = ['power on', 'power off', 'rebooting', 'soft rebooting', 'soft power off'];
const BOOT_DEVICES: BootDevice[] = ['pxe', 'disk'];

/** Every call the fake interfaces received, newest last (tests assert on it). */
export const fakeCalls: { node: string; call: string; args?: unknown }[] = [];
function record(node: DriverNode, call: string, args?: unknown): void {
  fakeCalls.push({ node: node.uuid, call, args });
  if (fakeCalls.length > 10_000) fakeCalls.splice(0, fakeCalls.length - 10_000);
}

export const fakePower: PowerInterface = {
  name: 'fake',
  validate() {},
  async getPowerState(node) {
    const s = node.power_state;
    return s === 'power on' || s === 'power off' || s === 'error' ? s as PowerState : 'power off';
  },
  async setPowerState(node, target, timeoutS) {
    if (!SUPPORTED_POWER.includes(target)) {
      throw new InvalidParameterValue(`set_power_state called with an invalid power state: ${target}.`);
    }
    record(node, 'setPowerState', { target, timeoutS });
  },
  getSupportedPowerStates() { return [...SUPPORTED_POWER]; },
};

/** Ironic's FakeManagement indicators: a read-only chassis LED and a settable system LED. */
const FAKE_INDICATORS: SupportedIndicators = {
  chassis: { 'led-0': { readonly: true, states: ['OFF', 'ON'] } },
  system: { led: { readonly: false, states: ['BLINKING', 'OFF', 'ON'] } },
};

/**
 * Fake management remembers each node's boot device; one instance (and memory) per conductor. Boot mode and
 * secure boot are remembered too (Ironic 21.4's fake has neither: here they let the 1.76 endpoints be exercised
 * without a BMC).
 */
export function createFakeManagement(): ManagementInterface {
  const bootDevices = new Map<string, { boot_device: BootDevice; persistent: boolean }>();
  const bootModes = new Map<string, NodeBootMode>();
  const secureBoot = new Map<string, boolean>();
  return {
    name: 'fake',
    validate() {},
    getSupportedBootDevices() { return [...BOOT_DEVICES]; },
    async getBootDevice(node) {
      return bootDevices.get(node.uuid) ?? { boot_device: 'pxe', persistent: false };
    },
    async setBootDevice(node, device, persistent) {
      if (!BOOT_DEVICES.includes(device)) throw new InvalidParameterValue(`Invalid boot device ${device} specified.`);
      bootDevices.set(node.uuid, { boot_device: device, persistent });
      record(node, 'setBootDevice', { device, persistent });
    },
    async getBootMode(node) { return bootModes.get(node.uuid) ?? null; },
    async setBootMode(node, mode) {
      bootModes.set(node.uuid, mode);
      record(node, 'setBootMode', { mode });
    },
    async getSecureBootState(node) { return secureBoot.get(node.uuid) ?? null; },
    async setSecureBootState(node, on) {
      secureBoot.set(node.uuid, on);
      record(node, 'setSecureBootState', { on });
    },
    async getSupportedIndicators() { return structuredClone(FAKE_INDICATORS); },
    async getIndicatorState(_node, component, indicator) {
      const c = FAKE_INDICATORS[component];
      if (!c) throw new InvalidParameterValue(`Invalid component ${component} specified.`);
      if (!c[indicator]) throw new InvalidParameterValue(`Invalid indicator ${indicator} specified.`);
      return 'ON';
    },
  };
}

export const fakeBoot: BootInterface = {
  name: 'fake',
  validate() {},
  async prepareRamdisk(node) { record(node, 'prepareRamdisk'); },
  async cleanUpRamdisk(node) { record(node, 'cleanUpRamdisk'); },
  async prepareInstance(node) { record(node, 'prepareInstance'); },
  async cleanUpInstance(node) { record(node, 'cleanUpInstance'); },
};

export const fakeDeploy: DeployInterface = {
  name: 'fake',
  validate() {},
  async deploy(task) { record(task.driverNode(), 'deploy'); },
  async tearDown(task) { record(task.driverNode(), 'tearDown'); },
  async clean(task, opts) {
    record(task.driverNode(), 'clean', opts);
    // Out-of-band steps run in the conductor whatever the deploy interface (Ironic's conductor steps); the fake
    // deploy has no ramdisk, so the bios steps of a manual cleaning are all it runs.
    for (const s of opts.manual ? opts.steps ?? [] : []) {
      if (s.interface === 'bios') await runBiosStep(task, s.step, s.args);
    }
  },
  async abortCleaning(task) { record(task.driverNode(), 'abortCleaning'); },
};

export const fakeRescue: RescueInterface = {
  name: 'fake',
  validate() {},
  async rescue(task) { record(task.driverNode(), 'rescue'); },
  async unrescue(task) { record(task.driverNode(), 'unrescue'); },
};

export const fakeInspect: InspectInterface = {
  name: 'fake',
  validate() {},
  async inspectHardware(task) { record(task.driverNode(), 'inspect'); },
};

export const fakeRaid: RaidInterface = { name: 'fake', validate() {} };
const accepting = (name: string): DriverInterface => ({ name, validate() {} });

export function registerFakeHardware(reg: DriverRegistry): void {
  reg.registerInterface('power', fakePower);
  reg.registerInterface('management', createFakeManagement());
  reg.registerInterface('boot', fakeBoot);
  reg.registerInterface('deploy', fakeDeploy);
  reg.registerInterface('rescue', fakeRescue);
  reg.registerInterface('inspect', fakeInspect);
  reg.registerInterface('raid', fakeRaid);
  reg.registerInterface('bios', fakeBios);
  reg.registerInterface('console', accepting('fake'));
  reg.registerInterface('vendor', accepting('fake'));
  reg.registerInterface('storage', accepting('fake'));
  reg.registerHardwareType({
    name: 'fake-hardware',
    supported: {
      bios: ['fake', 'no-bios'],
      boot: ['fake', 'ipxe'],
      console: ['fake', 'no-console'],
      deploy: ['fake', 'direct', 'iscsi'],
      inspect: ['fake', 'no-inspect', 'agent'],
      management: ['fake'],
      network: ['noop', 'flat'],
      power: ['fake'],
      raid: ['fake', 'no-raid'],
      rescue: ['fake', 'no-rescue'],
      storage: ['fake', 'noop'],
      vendor: ['fake', 'no-vendor'],
    },
  });
}
