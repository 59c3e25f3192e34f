// esbuild alias target for `supports-color`: `debug` probes it with a try/require that a SEA can't satisfy
// (SEA require only loads built-ins), and the ramdisk logs to a serial console where colour is noise anyway.
module.exports = false;
