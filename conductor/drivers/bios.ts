/**
 * The bios interface (Ironic's drivers/base.py BIOSInterface): `apply_configuration` and `factory_reset` are
 * clean and deploy steps (priority 0: only when asked for), both followed by `cache_bios_settings`, which
 * refreshes the node's rows in the settings cache (store/bios-settings.ts) that GET /v1/nodes/{node}/bios
 * serves. The `fake` implementation keeps the cache as the configuration itself, like Ironic's FakeBIOS.
 */
import { InvalidParameterValue } from '../errors.js';
import { biosSettings, type BiosSettingInput } from '../store/bios-settings.js';
import type { BiosInterface, BiosSettingRequest, NodeTask } from './index.js';
import type { DriverInterface } from './types.js';

export type { BiosInterface, BiosSettingRequest } from './index.js';

/** The steps a bios interface offers (both priority 0, as Ironic's), with apply_configuration's argsinfo. */
export const BIOS_STEPS = [
  { interface: 'bios', step: 'apply_configuration', priority: 0, abortable: false, reboot_requested: false,
    requires_ramdisk: false,
    argsinfo: { settings: { description: 'A list of BIOS settings to be applied', required: true } } },
  { interface: 'bios', step: 'factory_reset', priority: 0, abortable: false, reboot_requested: false,
    requires_ramdisk: false, argsinfo: null },
] as const;

export function isBiosInterface(i: DriverInterface | undefined): i is BiosInterface {
  return !!i && typeof (i as Partial<BiosInterface>).applyConfiguration === 'function';
}

/** Python's str() of a JSON scalar, which is what Ironic's string-typed value column holds. */
export function biosValueString(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** apply_configuration's `settings` argument: a list of {name, value} dicts (Ironic's schema). */
export function parseBiosSettingsArg(args: Record<string, unknown> | undefined): BiosSettingRequest[] {
  const settings = args?.settings;
  if (!Array.isArray(settings)) {
    throw new InvalidParameterValue('bios.apply_configuration requires the argument "settings": a list of {"name", "value"} dicts.');
  }
  return settings.map((s, i) => {
    if (!s || typeof s !== 'object' || Array.isArray(s)) throw new InvalidParameterValue(`BIOS setting ${i} is not a dict.`);
    const o = s as Record<string, unknown>;
    if (typeof o.name !== 'string' || !o.name) throw new InvalidParameterValue(`BIOS setting ${i} needs a "name" string.`);
    if (!('value' in o)) throw new InvalidParameterValue(`BIOS setting ${o.name} needs a "value".`);
    return { name: o.name, value: o.value };
  });
}

/**
 * Runs a bios step on the node's bios interface: the steps call cache_bios_settings afterwards, as Ironic's
 * @cache_bios_settings decorator does.
 */
export async function runBiosStep(task: NodeTask, step: string, args: Record<string, unknown> | undefined): Promise<void> {
  const impl: DriverInterface = task.driver.get('bios');
  if (!isBiosInterface(impl)) {
    throw new InvalidParameterValue(`Node ${task.node.uuid}'s bios interface ${impl.name} has no step ${step}.`);
  }
  await impl.validate(task.driverNode());
  if (step === 'apply_configuration') await impl.applyConfiguration(task, parseBiosSettingsArg(args));
  else if (step === 'factory_reset') await impl.factoryReset(task);
  else throw new InvalidParameterValue(`The bios interface has no step ${step}.`);
  await impl.cacheBiosSettings(task);
}

/**
 * Ironic's node_cache_bios_settings, at the end of verify and at the start of cleaning: a failure (a BMC without
 * BIOS settings, no-bios) is only reported to `warn`, never fails the operation.
 */
export async function cacheBiosSettingsQuietly(task: NodeTask, warn: (message: string, err: unknown) => void): Promise<void> {
  const impl: DriverInterface | undefined = task.driver.find('bios');
  if (!isBiosInterface(impl)) return;
  try {
    await impl.cacheBiosSettings(task);
  } catch (e) {
    warn(`Caching of bios settings failed on node ${task.node.uuid}.`, e);
  }
}

/** Ironic's FakeBIOS: the configuration applied is the cache (sync: settings not given are dropped). */
export const fakeBios: BiosInterface = {
  name: 'fake',
  validate() {},
  async applyConfiguration(task, settings) {
    const cached: BiosSettingInput[] = settings.map((s) => ({ name: s.name, value: biosValueString(s.value) }));
    await biosSettings(task.store).sync(task.node.uuid, cached);
  },
  async factoryReset(task) {
    await biosSettings(task.store).deleteAll(task.node.uuid);
  },
  async cacheBiosSettings() {},
};
