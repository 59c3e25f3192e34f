/**
 * Worked example of a vendor plugin: list this file in the conductor's `vendor_plugins` setting and every node
 * whose vendor interface is `ipmitool` or `fake` gains a sync GET method `hello`, and those hardware types a
 * driver-level method `hello_driver`:
 *
 *   baremetal node passthru call --http-method GET NODE hello --arg name=world
 *   → {"greeting": "hello world", "node": "<uuid>", "power_state": "power off"}
 *
 * A plugin exports `registerVendorMethods(reg)` and calls `addMethods` on registered vendor interfaces; it needs
 * no change to the conductor. Methods get the node's task (read `task.node`, drive `task.driver`, save fields)
 * and the call's HTTP method and arguments.
 */
import type { DriverRegistry } from '../index.js';
import { vendorArg, vendorImpl } from '../vendor.js';

export function registerVendorMethods(reg: DriverRegistry): void {
  for (const name of ['ipmitool', 'fake']) {
    vendorImpl(reg, name)?.addMethods({
      node: {
        hello: {
          http_methods: ['GET'], async: false, require_exclusive_lock: false,
          description: 'Example plugin method: greets "name" (default "operator") from the node.',
          validate(_node, call) { vendorArg(call, 'name', 'string', false); },
          async run(task, call) {
            const who = vendorArg(call, 'name', 'string', false) ?? 'operator';
            return { greeting: `hello ${who}`, node: task.node.uuid, power_state: task.node.power_state };
          },
        },
      },
      driver: {
        hello_driver: {
          http_methods: ['GET'], async: false,
          description: 'Example plugin driver method: says which vendor interface answered.',
          async run() { return { vendor_interface: name }; },
        },
      },
    });
  }
}
