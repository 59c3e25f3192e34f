/**
 * The one list of driver modules every conductor registers at start-up, into its own registry. To add hardware
 * types or interfaces (ipmitool, redfish, ipxe, ...): export a `registerX(reg)` from your module that calls
 * reg.registerInterface / reg.registerHardwareType (conductor/drivers/index.ts), and append it to REGISTRARS
 * below. The `direct` deploy interface needs the conductor's context and is registered by main.ts once the
 * context exists (conductor/orchestration/direct.ts).
 */
import { registerFakeHardware } from './fake.js';
import type { DriverRegistry } from './index.js';
import { registerNoopInterfaces } from './noop.js';
import { registerRealDrivers } from './real.js';

const REGISTRARS: readonly ((reg: DriverRegistry) => void)[] = [
  registerNoopInterfaces,
  registerFakeHardware,
  registerRealDrivers,
];

export function registerBuiltinDrivers(reg: DriverRegistry): void {
  for (const r of REGISTRARS) r(reg);
}
