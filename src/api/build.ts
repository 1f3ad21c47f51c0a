/** `kiln-oci/build`: kiln.yaml projects: compile in a toolchain, build and push images. */
export {
  type BuildEvent,
  type BuildOptions,
  type BuildResult,
  type BuiltImage,
  type BuiltSbom,
  build,
} from '../build/build.js';
export { type CompileEvent, type CompileOptions, type CompileResult, compile } from '../build/compile.js';
export { LockFile } from '../build/lock.js';
export { type LoadedProject, loadProject, type Project } from '../build/project.js';
export {
  buildWorkspace,
  findProjects,
  type ProjectEvent,
  type ProjectResult,
  type WorkspaceOptions,
  type WorkspaceResult,
} from '../build/workspace.js';
