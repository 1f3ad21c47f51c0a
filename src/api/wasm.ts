/** `kiln-oci/wasm`: reading a `.wasm` and packaging it as an image in each format of docs/formats.md (a Spin application from its spin.toml). */

export { type CheckWasmFileOptions, checkWasmFile } from '../wasm/check-file.js';
export { inspectWasm, type WasmInfo } from '../wasm/inspect.js';
export { type PackOptions, type PackResult, pack } from '../wasm/pack.js';
export { isWasmFormat, WASM_FORMATS, type WasmFormat } from '../wasm/package.js';
export type { SpinPackaged } from '../wasm/spin.js';
