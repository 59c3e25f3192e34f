/**
 * The `redfish` bios interface (Ironic's drivers/modules/redfish/bios.py over sushy): the ComputerSystem's Bios
 * resource holds the current Attributes; a change is PATCHed to its `@Redfish.Settings` SettingsObject
 * (Bios/Settings, with SettingsApplyTime OnReset when offered) and takes effect at the next reset;
 * #Bios.ResetBios restores the defaults. The cache gets every attribute, with the attribute registry's fields
 * (type, allowable values, bounds, read-only, reset-required, unique) when the BMC publishes the registry.
 *
 * Difference from Ironic, on purpose: Ironic reboots the node into the ramdisk and verifies on the next
 * heartbeat (two passes of the step); here the step reboots the node through its power interface and verifies
 * at once, so it works the same with or without a ramdisk (fake deploy, the lab's emulator).
 */
import { DriverOperationError } from '../errors.js';
import type { NodeTask } from './index.js';
import { biosSettings, type BiosSettingInput } from '../store/bios-settings.js';
import { biosValueString, type BiosInterface, type BiosSettingRequest } from './bios.js';
import { RedfishBase, wrap, type Ctx } from './redfish.js';

type Obj = Record<string, unknown>;

const REGISTRY_MAP: readonly [keyof BiosSettingInput, string][] = [
  ['attribute_type', 'Type'], ['lower_bound', 'LowerBound'], ['max_length', 'MaxLength'], ['min_length', 'MinLength'],
  ['read_only', 'ReadOnly'], ['reset_required', 'ResetRequired'], ['unique', 'IsSystemUniqueProperty'],
  ['upper_bound', 'UpperBound'],
];

export class RedfishBios extends RedfishBase implements BiosInterface {
  readonly name = 'redfish';

  private async bios(task: NodeTask, what: string): Promise<{ ctx: Ctx; path: string; bios: Obj }> {
    const ctx = await this.ctx(task.driverNode());
    const link = (ctx.system.Bios as Obj | undefined)?.['@odata.id'];
    if (typeof link !== 'string') {
      throw new DriverOperationError(`Redfish BIOS ${what} failed for node ${task.node.uuid}, because BIOS settings are not supported.`);
    }
    return { ctx, path: link, bios: await ctx.client.call('GET', link) };
  }

  /** Reboots the node so pending settings apply (Ironic's reboot_to_finish_step), recording the power state. */
  private async reboot(task: NodeTask): Promise<void> {
    await task.driver.power.setPowerState(task.driverNode(), 'rebooting');
    await task.save({ power_state: 'power on' });
  }

  async applyConfiguration(task: NodeTask, settings: BiosSettingRequest[]): Promise<void> {
    const requested: Obj = Object.fromEntries(settings.map((s) => [s.name, s.value]));
    try {
      const { ctx, path, bios } = await this.bios(task, 'apply configuration');
      const st = bios['@Redfish.Settings'] as Obj | undefined;
      const target = ((st?.SettingsObject as Obj | undefined)?.['@odata.id'] as string | undefined) ?? `${path}/Settings`;
      const applyTimes = st?.SupportedApplyTimes;
      const body: Obj = { Attributes: requested };
      if (Array.isArray(applyTimes) && applyTimes.includes('OnReset')) body['@Redfish.SettingsApplyTime'] = { ApplyTime: 'OnReset' };
      await ctx.client.call('PATCH', target, body);
      await this.reboot(task);
      const current = ((await ctx.client.call('GET', path)).Attributes ?? {}) as Obj;
      const notUpdated = Object.fromEntries(Object.entries(requested)
        .filter(([k, v]) => biosValueString(current[k]) !== biosValueString(v)));
      if (Object.keys(notUpdated).length) {
        throw new DriverOperationError(`Redfish BIOS apply_configuration step failed for node ${task.node.uuid}. Attributes ` +
          `${JSON.stringify(notUpdated)} are not updated.`);
      }
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Redfish BIOS apply configuration failed for node ${task.node.uuid}. Error: ${m}`, c));
    }
  }

  async factoryReset(task: NodeTask): Promise<void> {
    try {
      const { ctx, path, bios } = await this.bios(task, 'factory reset');
      const action = (bios.Actions as Obj | undefined)?.['#Bios.ResetBios'] as Obj | undefined;
      const target = typeof action?.target === 'string' ? action.target : `${path}/Actions/Bios.ResetBios`;
      await ctx.client.call('POST', target, {});
      await this.reboot(task);
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Redfish BIOS factory reset failed for node ${task.node.uuid}. Error: ${m}`, c));
    }
  }

  async cacheBiosSettings(task: NodeTask): Promise<void> {
    const { ctx, bios } = await this.bios(task, 'cache settings').catch((e: unknown) => {
      throw wrap(e, (m, c) => new DriverOperationError(`Cannot fetch BIOS attributes for node ${task.node.uuid}: ${m}`, c));
    });
    const attrs = (bios.Attributes ?? {}) as Obj;
    // As Ironic: a missing or broken registry only costs the registry fields.
    const registry = await this.registry(ctx, bios).catch(() => new Map<string, Obj>());
    const settings: BiosSettingInput[] = Object.entries(attrs).map(([name, value]) => {
      const s: BiosSettingInput = { name, value: biosValueString(value) };
      const reg = registry.get(name);
      if (reg) {
        for (const [field, key] of REGISTRY_MAP) if (key in reg) (s as unknown as Obj)[field] = reg[key] ?? null;
        if (Array.isArray(reg.Value)) {
          s.allowable_values = (reg.Value as Obj[]).map((v) => (v.ValueName ?? v.ValueDisplayName) as string | undefined)
            .filter((v): v is string => typeof v === 'string');
        }
      }
      return s;
    });
    await biosSettings(task.store).sync(task.node.uuid, settings);
  }

  /** The attribute registry named by the Bios resource: /redfish/v1/Registries member -> Location Uri. */
  private async registry(ctx: Ctx, bios: Obj): Promise<Map<string, Obj>> {
    const out = new Map<string, Obj>();
    const name = bios.AttributeRegistry;
    if (typeof name !== 'string') return out;
    const coll = await ctx.client.call('GET', '/redfish/v1/Registries');
    const members = Array.isArray(coll.Members) ? (coll.Members as Obj[]) : [];
    for (const m of members) {
      const id = m['@odata.id'];
      if (typeof id !== 'string' || !id.endsWith(`/${name}`)) continue;
      const file = await ctx.client.call('GET', id);
      const loc = Array.isArray(file.Location) ? (file.Location as Obj[]).find((l) => typeof l.Uri === 'string') : undefined;
      if (!loc) return out;
      const reg = await ctx.client.call('GET', loc.Uri as string);
      const entries = ((reg.RegistryEntries as Obj | undefined)?.Attributes ?? []) as Obj[];
      for (const a of entries) if (typeof a.AttributeName === 'string') out.set(a.AttributeName, a);
      return out;
    }
    return out;
  }
}
