/**
 * How a loaded manager's own code (the generic manager's erase, firmware, inventory and deploy steps) dispatches
 * back to all loaded managers, as IPA's dispatch_to_managers does from inside GenericHardwareManager. dispatch.ts
 * registers its dispatchToManagers here when it is evaluated; the generic manager imports only this module, so
 * dispatch.ts -> generic/index.ts is not a circle.
 */
import { HardwareManagerConfigurationError } from '../protocol/agent-api.js';

export type Dispatch = <T = unknown>(method: string, ...args: unknown[]) => Promise<T>;

let impl: Dispatch | null = null;

/** Called once by hardware-managers/dispatch.ts. */
export function setDispatcher(d: Dispatch): void {
  impl = d;
}

export async function dispatchToManagers<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
  if (!impl) {
    throw new HardwareManagerConfigurationError(
      `dispatch of ${method} before hardware-managers/dispatch.ts was loaded; load the managers first`,
    );
  }
  return impl<T>(method, ...args);
}
