/**
 * Bounds on BMC calls (power and boot device), in total and per BMC address, so a fleet deploy cannot flood
 * one BMC (a chassis manager serving many blades) nor open hundreds of BMC sessions at once. The real power and
 * management implementations of a conductor's registry are re-registered wrapped: every call waits for a slot
 * of the node's BMC address, then for a global one (conductor/fleet.ts). Fake interfaces stay unbounded.
 */
import type { FleetState } from '../fleet.js';
import type { DriverRegistry } from './index.js';
import type { DriverNode, ManagementInterface, PowerInterface } from './types.js';

const BOUNDED = ['ipmitool', 'redfish'];

/** The BMC a node's calls go to: ipmi address:port, or the Redfish service's host:port. */
export function bmcAddress(node: DriverNode): string {
  const di = node.driver_info;
  if (typeof di.ipmi_address === 'string') return `ipmi:${di.ipmi_address}:${String(di.ipmi_port ?? 623)}`;
  if (typeof di.redfish_address === 'string') {
    try {
      const u = new URL(di.redfish_address.includes('://') ? di.redfish_address : `https://${di.redfish_address}`);
      return `redfish:${u.host}`;
    } catch {
      return `redfish:${di.redfish_address}`;
    }
  }
  return `node:${node.uuid}`;
}

export function boundBmcCalls(reg: DriverRegistry, fleet: FleetState): void {
  for (const name of BOUNDED) {
    const power = reg.getInterfaceImpl('power', name);
    if (power) {
      const wrapped: PowerInterface = Object.create(power) as PowerInterface;
      wrapped.getPowerState = (node) => fleet.bmcCall(bmcAddress(node), () => power.getPowerState(node));
      wrapped.setPowerState = (node, target, timeoutS) =>
        fleet.bmcCall(bmcAddress(node), () => power.setPowerState(node, target, timeoutS));
      reg.registerInterface('power', wrapped);
    }
    const mgmt = reg.getInterfaceImpl('management', name);
    if (mgmt) {
      const wrapped: ManagementInterface = Object.create(mgmt) as ManagementInterface;
      wrapped.getBootDevice = (node) => fleet.bmcCall(bmcAddress(node), () => mgmt.getBootDevice(node));
      wrapped.setBootDevice = (node, device, persistent) =>
        fleet.bmcCall(bmcAddress(node), () => mgmt.setBootDevice(node, device, persistent));
      reg.registerInterface('management', wrapped);
    }
  }
}
