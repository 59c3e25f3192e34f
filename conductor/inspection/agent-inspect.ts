/**
 * The `agent` inspect interface (Ironic's in-band inspection, drivers/modules/inspector/agent.py): boot the
 * ramdisk with `ipa-inspection-callback-url`, wait in `inspect wait` for the callback (process.ts), or time
 * out through the periodic `inspect_wait_timeout` check. Out-of-band facts are not read here.
 */
import { isIP } from 'node:net';
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import type { InspectInterface, NodeTask } from '../drivers/index.js';
import { InvalidParameterValue } from '../errors.js';
import { nodePowerAction, wipeAgentToken } from '../services/power.js';
import { LOOKUP_CACHE_FIELD } from './process.js';

/** The guest-facing API URL (what ramdisks are told), as direct.ts computes it. */
export function guestApiUrl(ctx: ConductorContext): string {
  return ctx.config.api_url ?? `${ctx.api?.scheme ?? 'http'}://${ctx.config.host}:${ctx.config.port}`;
}

/** Ironic's get_inspection_callback: <api>/v1/continue_inspection, or the configured override. */
export function inspectionCallbackUrl(ctx: ConductorContext): string {
  const o = ctx.config.inspector.callback_endpoint_override;
  if (o) return o;
  const base = guestApiUrl(ctx).replace(/\/+$/, '');
  return base.endsWith('/v1') ? `${base}/continue_inspection` : `${base}/v1/continue_inspection`;
}

/** BMC addresses from driver_info, for the lookup by bmc_address (loopback ones say nothing about a node). */
export function driverInfoBmcAddresses(driverInfo: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of ['ipmi_address', 'redfish_address', 'bmc_address']) {
    const v = driverInfo[k];
    if (typeof v !== 'string' || !v) continue;
    let host = v;
    try {
      if (/^[a-z]+:\/\//i.test(v)) host = new URL(v).hostname.replace(/^\[|\]$/g, '');
    } catch {
      continue;
    }
    if (isIP(host) && !host.startsWith('127.') && host !== '::1') out.push(host);
  }
  return [...new Set(out)];
}

export function createAgentInspect(ctx: ConductorContext): InspectInterface {
  return {
    name: 'agent',
    properties: {},
    async validate(node) {
      const extra = ctx.config.inspector.extra_kernel_params;
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters would end the iPXE command line
      if (/[\x00-\x1f\x7f]/.test(extra)) throw new InvalidParameterValue('inspector.extra_kernel_params holds control characters');
      void node;
    },

    async inspectHardware(task: NodeTask) {
      await task.driver.boot.validate(task.driverNode());
      // Inspection never starts fast-track: the old agent's token and URL go (Ironic wipes them too).
      await wipeAgentToken(task, ['agent_last_heartbeat']);
      await task.updateInternalInfo({ [LOOKUP_CACHE_FIELD]: driverInfoBmcAddresses(task.node.driver_info) });
      const kernelParams = [`ipa-inspection-callback-url=${inspectionCallbackUrl(ctx)}`,
        ...ctx.config.inspector.extra_kernel_params.split(/\s+/).filter(Boolean)];
      const apiUrl = guestApiUrl(ctx);
      try {
        await nodePowerAction(task, 'power off');
        await task.driver.boot.prepareRamdisk(task.driverNode(), { apiUrl, kernelParams, requestId: `req-${task.node.uuid}`,
          ...(ctx.api?.caPem && apiUrl.startsWith('https:') ? { apiCaPem: ctx.api.caPem } : {}) });
        await task.driver.management.setBootDevice(task.driverNode(), 'pxe', false);
        await nodePowerAction(task, 'power on');
      } catch (e) {
        throw new Error(`unable to start inspection: ${errorMessage(e)}`);
      }
      return 'wait';
    },

    async abort(task: NodeTask) {
      await task.updateInternalInfo({ [LOOKUP_CACHE_FIELD]: undefined });
      await wipeAgentToken(task);
      try {
        await nodePowerAction(task, 'power off');
      } finally {
        await task.driver.boot.cleanUpRamdisk(task.driverNode());
      }
    },
  };
}
