/**
 * The one list of driver modules loaded at start-up. To add hardware types or interfaces (ipmitool, redfish,
 * ipxe, direct deploy, ...): export a `registerX()` from your module that calls registerInterface /
 * registerHardwareType (conductor/drivers/index.ts), and append it to REGISTRARS below.
 */
import { registerFakeHardware } from './fake.js';
import { registerNoopInterfaces } from './noop.js';
import { registerRealDrivers } from './real.js';
import { registerDirectDeploy } from '../orchestration/direct.js';

const REGISTRARS: (() => void)[] = [
  registerNoopInterfaces,
  registerFakeHardware,
  registerRealDrivers,
  registerDirectDeploy,
];

let done = false;
export function registerBuiltinDrivers(): void {
  if (done) return;
  done = true;
  for (const r of REGISTRARS) r();
}
