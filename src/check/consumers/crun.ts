/**
 * crun built with a wasm engine (wasmedge, wasmtime, wasmer, wamr), as podman and CRI-O run it:
 * the image's annotations pick the wasm handler, and the module comes from the root filesystem.
 */
import { defineConsumer, type Findings, picked, type Rule } from '../consumer.js';
import { argvOf, type SubjectImage } from '../subject.js';
import { rootfsEntrypoint } from './containerd.js';

const RULES: readonly Rule[] = [
  {
    id: 'crun.handler',
    severity: 'fail',
    says: 'crun picks a wasm handler only for the annotation run.oci.handler: wasm | wasm-smart or module.wasm.image/variant: compat | compat-smart; otherwise it execs the entrypoint as a native binary',
    source:
      'containers/crun src/libcrun/handlers/handler-utils.c (wasm_can_handle_container), src/libcrun/custom-handler.c',
  },
  {
    id: 'crun.smart',
    severity: 'fail',
    says: 'the -smart values (wasm-smart, compat-smart) run wasm only when argv[0] ends in .wasm or .wat, and anything else natively',
    source: 'containers/crun src/libcrun/handlers/handler-utils.c (wasm_can_handle_container)',
  },
  {
    id: 'crun.module',
    severity: 'gate',
    says: "crun's wasmtime handler compiles the file as a core module; a component needs a handler built with component support",
    source: 'containers/crun src/libcrun/handlers/wasmtime.c',
  },
  {
    id: 'crun.rootfs',
    severity: 'fail',
    says: 'crun runs a root filesystem unpacked from tar layers, with the module at argv[0]; layers that are not tar give it nothing to run',
    source: 'containers/crun src/libcrun/container.c; the OCI runtime spec (process.args)',
  },
];

const VARIANT = 'module.wasm.image/variant';
const HANDLER = 'run.oci.handler';

export const crun = defineConsumer({
  name: 'crun',
  title: 'crun with a wasm handler (podman, CRI-O)',
  rules: RULES,
  replay(subject, f) {
    // podman pulls the wasm platform: the wasm entry of an index, else the one image.
    const image =
      subject.images.find((i) => i.entryPlatform?.architecture === 'wasm') ??
      (subject.index ? undefined : subject.images[0]);
    if (!image) {
      f.add('crun.rootfs', 'the index has no wasm image to run', 'list a wasm image in the index');
      return undefined;
    }
    checkImage(image, f);
    return picked(image, image.entryPlatform ? `${image.entryPlatform.os}/wasm` : undefined);
  },
});

function checkImage(image: SubjectImage, f: Findings): void {
  const handler = image.annotations[HANDLER];
  const variant = image.annotations[VARIANT];
  // run.oci.handler wins over the variant when present (handler-utils.c checks it first).
  const smart = handler !== undefined ? handler === 'wasm-smart' : variant === 'compat-smart';
  const wasmHandler =
    handler !== undefined
      ? handler === 'wasm' || handler === 'wasm-smart'
      : variant === 'compat' || variant === 'compat-smart';
  if (!wasmHandler)
    f.add(
      'crun.handler',
      variant === undefined && handler === undefined
        ? `no ${VARIANT} or ${HANDLER} annotation: crun runs the entrypoint as a native binary`
        : `${handler !== undefined ? `${HANDLER}: ${handler}` : `${VARIANT}: ${variant}`} does not select a wasm handler`,
      `--format image writes ${VARIANT}: compat-smart (or --annotation ${VARIANT}=compat)`,
    );
  const entry = rootfsEntrypoint(image, f, {
    rule: 'crun.rootfs',
    noRootfs: [
      'no tar layer: the module is not in a root filesystem crun can run',
      '--format image puts the module in a tar layer at /<name>.wasm',
    ],
    noArgv: 'no Entrypoint or Cmd: crun has no argv[0] to run',
  });
  if (wasmHandler && entry && entry.file !== 'unknown' && entry.file.wasm === 'component')
    f.add(
      'crun.module',
      `${entry.path} is a component; crun's wasmtime handler loads core modules`,
      "check that the node's crun handler takes components",
    );
  const argv = argvOf(image);
  if (
    wasmHandler &&
    smart &&
    argv[0] !== undefined &&
    !argv[0].endsWith('.wasm') &&
    !argv[0].endsWith('.wat')
  )
    f.add(
      'crun.smart',
      `argv[0] is ${argv[0]}, which does not end in .wasm or .wat: the -smart handler runs it natively`,
      'name the module <name>.wasm in the entrypoint (kiln package --name), or use the compat variant',
    );
}
