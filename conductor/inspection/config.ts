/**
 * Inspection settings (`inspector` in the conductor config), after Ironic's [inspector], [auto_discovery] and
 * [inspection_rules] options. Kept here so conductor/config.ts only gains one key.
 */
import { z } from 'zod';

/** Ironic's hook names; ours run in this order whatever order the config lists them in. */
export const HOOK_NAMES = [
  'ramdisk-error', 'validate-interfaces', 'ports', 'architecture', 'cpus', 'memory', 'root-device', 'boot-mode',
  'local-link-connection', 'extra-hardware',
] as const;
export type HookName = (typeof HOOK_NAMES)[number];

const RuleStep = z.object({
  op: z.string().min(1),
  args: z.record(z.string(), z.unknown()).default({}),
}).strict();

export const InspectionRuleSchema = z.object({
  uuid: z.string().optional(),
  description: z.string().nullable().optional(),
  priority: z.number().int().default(0),
  sensitive: z.boolean().default(false),
  phase: z.literal('main').default('main'),
  conditions: z.array(RuleStep).default([]),
  actions: z.array(RuleStep).min(1),
}).strict();
export type InspectionRule = z.infer<typeof InspectionRuleSchema>;

export const InspectorConfigSchema = z.object({
  /** Which inventory MACs become ports: pxe (the booting NIC), active (with an IP), all, disabled. */
  add_ports: z.enum(['pxe', 'active', 'all', 'disabled']).default('pxe'),
  /** Which existing ports survive inspection: all, present (in the inventory), added (valid per add_ports). */
  keep_ports: z.enum(['all', 'present', 'added']).default('all'),
  update_pxe_enabled: z.boolean().default(true),
  /**
   * Processing hooks. Ironic's default_hooks are ramdisk-error,validate-interfaces,ports,architecture; the
   * issue asks for cpus/memory/local_gb/boot_mode/LLDP too, so they are on by default here.
   */
  hooks: z.array(z.enum(HOOK_NAMES)).default([
    'ramdisk-error', 'validate-interfaces', 'ports', 'architecture', 'cpus', 'memory', 'root-device', 'boot-mode',
    'local-link-connection', 'extra-hardware',
  ]),
  /** Leave 1 GiB of the root disk out of local_gb (Ironic's disk_partitioning_spacing). */
  disk_partitioning_spacing: z.boolean().default(true),
  extra_kernel_params: z.string().default(''),
  /** Power the node off once inspection data is processed. */
  power_off: z.boolean().default(true),
  /** Callback URL handed to ramdisks; default: the guest-facing API URL + /v1/continue_inspection. */
  callback_endpoint_override: z.string().url().optional(),
  /** Largest inspection payload accepted (IPA's logs collector sends a base64 tarball). */
  max_payload_bytes: z.number().int().positive().default(8 * 2 ** 20),
  /** Keep inventories under <data_dir>/inventory (database-less, like Ironic's swift backend); none: don't. */
  data_backend: z.enum(['file', 'none']).default('file'),
  /** Built-in inspection rules (Ironic's [inspection_rules]built_in_rules, inline). */
  rules: z.array(InspectionRuleSchema).default([]),
  /** A JSON file with more built-in rules (a list), read at start-up. */
  rules_file: z.string().optional(),
  discovery: z.object({
    enabled: z.boolean().default(false),
    /** Hardware type of enrolled nodes (Ironic's [auto_discovery]driver). */
    driver: z.string().default('ipmi'),
    /** driver_info of enrolled nodes; ipmi_address comes from the inventory's bmc_address. */
    driver_info: z.record(z.string(), z.unknown()).default({}),
    inspect_interface: z.string().default('agent'),
    /**
     * Node-facing URLs of the ramdisk unknown machines boot (the boot server's pxelinux.cfg/default, chained
     * by boot.ipxe when no per-MAC config matches). Unset: unknown machines fall through to their next device.
     */
    deploy_kernel: z.string().url().optional(),
    deploy_ramdisk: z.string().url().optional(),
  }).prefault({}),
}).strict();

export type InspectorConfig = z.infer<typeof InspectorConfigSchema>;
