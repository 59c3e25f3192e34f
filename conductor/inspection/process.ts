/**
 * The ramdisk's inspection callback (POST /v1/continue_inspection, and ironic-inspector's POST /v1/continue):
 * validate the payload, find the node (MACs, BMC address, or the UUID given), or enroll a new one when discovery
 * is on, then process the data in the node's background task (hooks, rules, stored inventory) and finish the
 * inspection: `manageable`, or `inspect failed` with the reason in last_error.
 *
 * Token rule (Ironic's, for ramdisk callbacks): inspection starts with the token wiped, so a real IPA posts
 * before it has one. Once a lookup issued a token for this inspection, the callback must carry that token
 * (X-Agent-Token); a token nobody issued is refused too.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { DuplicateNodeOnLookup, IronicError, InvalidParameterValue, NotFound } from '../errors.js';
import type { NodeTask } from '../drivers/index.js';
import { isUuid } from '../locks.js';
import { nodePowerAction, wipeAgentToken } from '../services/power.js';
import { initialState } from '../states.js';
import { DuplicateError, type NodeFields, type NodeRecord } from '../store/types.js';
import { isoTime } from '../time.js';
import { InspectionDataError, inventoryMacs, runHooks } from './hooks.js';
import { storeInspectionData } from './inventory-store.js';
import { applyRules } from './rules.js';

type Obj = Record<string, unknown>;

export const AUTO_DISCOVERED_FLAG = 'auto_discovered';
/** driver_internal_info key with the BMC addresses a node in `inspect wait` may be found by (Ironic's name). */
export const LOOKUP_CACHE_FIELD = 'lookup_bmc_addresses';

export interface CallbackPayload {
  inventory: Obj;
  pluginData: Obj;
}

/** Ironic's DATA_VALIDATOR: an object with inventory.interfaces, a non-empty list of {mac_address: string}. */
export function validatePayload(body: unknown): CallbackPayload {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidParameterValue('Invalid inspection data: expected a JSON object.');
  }
  const { inventory, ...rest } = body as Obj;
  if (inventory === undefined) throw new InvalidParameterValue("Invalid inspection data: 'inventory' is a required property");
  if (!inventory || typeof inventory !== 'object' || Array.isArray(inventory)) {
    throw new InvalidParameterValue("Invalid inspection data: 'inventory' must be an object");
  }
  const inv = inventory as Obj;
  if (!Array.isArray(inv.interfaces) || inv.interfaces.length === 0) {
    throw new InvalidParameterValue("Invalid inspection data: 'inventory.interfaces' must be a non-empty list");
  }
  for (const i of inv.interfaces) {
    if (!i || typeof i !== 'object' || typeof (i as Obj).mac_address !== 'string') {
      throw new InvalidParameterValue("Invalid inspection data: every interface needs a string 'mac_address'");
    }
  }
  for (const k of ['bmc_address', 'bmc_v6address'] as const) {
    if (inv[k] !== undefined && inv[k] !== null && typeof inv[k] !== 'string') {
      throw new InvalidParameterValue(`Invalid inspection data: 'inventory.${k}' must be a string or null`);
    }
  }
  return { inventory: inv, pluginData: rest };
}

/** BMC addresses worth matching: IPA reports 0.0.0.0 / ::/0 when it found none. */
export function bmcAddresses(inventory: Obj): string[] {
  return [inventory.bmc_address, inventory.bmc_v6address]
    .filter((a): a is string => typeof a === 'string' && a !== '' && !['0.0.0.0', '::/0', '::'].includes(a));
}

function notFound(): NotFound {
  // One message for every miss: the caller learns nothing about which nodes exist (Ironic does the same).
  return new NotFound('The resource could not be found.');
}

class AutoEnrollPossible extends Error {}

async function lookupNode(ctx: ConductorContext, macs: string[], bmcs: string[], nodeUuid: string | undefined):
  Promise<NodeRecord> {
  let node: NodeRecord | undefined;
  if (nodeUuid) {
    node = await ctx.store.getNodeByUuid(nodeUuid.toLowerCase());
    if (!node) throw notFound();
  }
  if (macs.length) {
    const byMac = await ctx.store.getNodeByMacs(macs).catch((e: unknown) => {
      if (!(e instanceof DuplicateNodeOnLookup)) throw e;
      ctx.log.error({ macs, nodes: e.nodes }, `inspection lookup refused: ${e.message}`);
      throw notFound();
    });
    if (byMac && node && byMac.uuid !== node.uuid) {
      ctx.log.error({ node: node.uuid, other: byMac.uuid, macs }, 'inspection lookup conflict: MACs belong to another node');
      throw notFound();
    }
    node ??= byMac;
  }
  if (node && node.provision_state !== 'inspect wait') {
    ctx.log.error({ node: node.uuid, state: node.provision_state }, 'inspection data for a node not waiting for it');
    throw notFound();
  }
  if (bmcs.length) {
    const byBmc = (await ctx.store.listNodes({ provision_state: ['inspect wait'] })).filter((n) => {
      const cached = n.driver_internal_info[LOOKUP_CACHE_FIELD];
      return Array.isArray(cached) && cached.some((a) => bmcs.includes(String(a)));
    });
    if (node && byBmc.length && !byBmc.some((n) => n.uuid === node?.uuid)) throw notFound();
    if (!node && byBmc.length > 1) throw notFound();
    node ??= byBmc[0];
  }
  if (!node) throw new AutoEnrollPossible();
  return node;
}

function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function checkToken(node: NodeRecord, token: string | undefined): void {
  const stored = node.driver_internal_info.agent_secret_token;
  if (typeof stored === 'string') {
    if (!token || !tokensEqual(stored, token)) throw new InvalidParameterValue('Invalid or missing agent token received.');
  } else if (token) {
    throw new InvalidParameterValue('Invalid or missing agent token received.');
  }
}

/** The driver_info address key a discovered node's BMC address goes to. */
function bmcKey(driver: string): string {
  return driver === 'redfish' ? 'redfish_address' : 'ipmi_address';
}

async function autoEnroll(ctx: ConductorContext, macs: string[], bmcs: string[]): Promise<NodeRecord> {
  const d = ctx.config.inspector.discovery;
  const driverInfo: Obj = { ...d.driver_info };
  const bmc = bmcs[0];
  if (bmc && driverInfo[bmcKey(d.driver)] === undefined) driverInfo[bmcKey(d.driver)] = bmc;
  let ifaces: Record<string, string | null>;
  try {
    ifaces = ctx.drivers.resolveInterfaceFields(d.driver, { inspect: d.inspect_interface });
  } catch (e) {
    ctx.log.error({ driver: d.driver, err: errorMessage(e) }, 'discovery: cannot enroll with the configured driver');
    // Like Ironic: the caller learns nothing about the configuration.
    throw new IronicError('Internal Server Error', 500);
  }
  const uuid = randomUUID();
  const node = await ctx.store.createNode({
    ...(ifaces as Partial<NodeFields>), ...initialState(82), uuid, driver: d.driver, driver_info: driverInfo,
    driver_internal_info: { [AUTO_DISCOVERED_FLAG]: true }, resource_class: ctx.config.default_resource_class,
    conductor_group: ctx.config.conductor_group,
  });
  ctx.log.info({ node: uuid, driver: d.driver, macs, bmc: bmcs }, 'enrolled a newly discovered node');
  return node;
}

export interface CallbackOptions {
  nodeUuid?: string | undefined;
  token?: string | undefined;
}

/**
 * Accepts inspection data; returns the node's UUID once the data is handed to the node's background task
 * (processing and the state change follow, as Ironic's 202).
 */
export async function continueInspection(ctx: ConductorContext, body: unknown, opts: CallbackOptions = {}):
  Promise<{ uuid: string }> {
  if (opts.nodeUuid !== undefined && !isUuid(opts.nodeUuid)) {
    throw new InvalidParameterValue(`Expected a UUID but received ${opts.nodeUuid}.`);
  }
  const { inventory, pluginData } = validatePayload(body);
  const macs = inventoryMacs(inventory);
  const bmcs = bmcAddresses(inventory);
  if (!macs.length && !bmcs.length && !opts.nodeUuid) throw new InvalidParameterValue('No lookup information provided');
  let node: NodeRecord;
  let discovered = false;
  try {
    node = await lookupNode(ctx, macs, bmcs, opts.nodeUuid);
  } catch (e) {
    if (!(e instanceof AutoEnrollPossible)) throw e;
    if (!ctx.config.inspector.discovery.enabled) throw notFound();
    if (opts.token) throw new InvalidParameterValue('Invalid or missing agent token received.');
    node = await autoEnroll(ctx, macs, bmcs);
    discovered = true;
    pluginData[AUTO_DISCOVERED_FLAG] = true;
  }
  if (!discovered) checkToken(node, opts.token);
  await ctx.tasks.withNodeTask(node, { exclusive: true, purpose: 'continue inspection' }, async (task) => {
    const state = task.node.provision_state;
    if (!(state === 'inspect wait' || (discovered && state === 'enroll'))) throw notFound();
    if (!discovered) checkToken(task.node, opts.token);
    await task.updateInternalInfo({ agent_last_heartbeat: isoTime() });
    task.spawn((t) => processInspection(ctx, t, inventory, pluginData));
  });
  return { uuid: node.uuid };
}

/** Runs hooks and rules, stores the data and finishes (or fails) the inspection. Holds the node's lock. */
export async function processInspection(ctx: ConductorContext, task: NodeTask, inventory: Obj, pluginData: Obj):
  Promise<void> {
  const cfg = ctx.config.inspector;
  const enrolling = task.node.provision_state === 'enroll';
  try {
    const props: Obj = { ...task.node.properties };
    const log = (msg: string, extra: Obj = {}): void => ctx.log.info({ node: task.node.uuid, ...extra }, msg);
    await runHooks({ cfg, store: ctx.store, node: task.node, inventory, pluginData, props, log }, cfg.hooks);
    const view: Obj = { ...task.node, properties: props, traits: [...task.node.traits] };
    if (cfg.rules.length) applyRules(cfg.rules, { node: view, inventory, pluginData, log: (m) => log(m) });
    const patch: Partial<NodeFields> = { properties: view.properties as Obj };
    for (const k of ['driver', 'driver_info', 'extra', 'instance_info', 'resource_class', 'description', 'name', 'owner',
      'lessee', 'conductor_group', 'traits'] as const) {
      if (JSON.stringify(view[k]) !== JSON.stringify(task.node[k])) (patch as Obj)[k] = view[k];
    }
    try {
      await task.save(patch);
    } catch (e) {
      if (e instanceof DuplicateError) throw new InspectionDataError(`a rule set a duplicate ${e.field}: ${e.value}`);
      throw e;
    }
    delete pluginData.logs;
    await storeInspectionData(ctx.config, task.node.uuid, { inventory, plugin_data: pluginData });
  } catch (e) {
    const msg = `Failed to finish inspection: ${errorMessage(e)}`;
    ctx.log.warn({ node: task.node.uuid, err: msg }, 'inspection processing failed');
    await tearDown(ctx, task);
    if (enrolling) await task.save({ last_error: msg });
    else await task.fire('fail', { lastError: msg });
    return;
  }
  await tearDown(ctx, task);
  if (enrolling) {
    ctx.log.info({ node: task.node.uuid }, 'auto-discovery finished');
    return;
  }
  await task.fire('done', { extra: { inspection_finished_at: isoTime() } });
  ctx.log.info({ node: task.node.uuid }, 'inspection finished');
}

/** Ends the ramdisk's life: token wiped, powered off (inspector.power_off), boot config removed. */
async function tearDown(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await wipeAgentToken(task, ['agent_last_heartbeat', LOOKUP_CACHE_FIELD]).catch(() => undefined);
  if (task.node.provision_state === 'enroll') return;
  if (ctx.config.inspector.power_off) {
    try {
      await nodePowerAction(task, 'power off');
    } catch (e) {
      ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not power off after inspection');
    }
  }
  try {
    await task.driver.boot.cleanUpRamdisk(task.driverNode());
  } catch (e) {
    ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not clean up the inspection boot');
  }
}
