/** `kiln-oci/run`: running a wasm image (a WASI preview 1 command or a component) in kiln's sandbox. */

export { type ComponentizedFile, componentizeFile, componentizeToTemp } from '../component/file.js';
export { type RunImageOptions, runWasm } from '../run/run.js';
