/**
 * `kiln-oci/build`: kiln.yaml projects: compile in a toolchain, build and push images. The project
 * model a build reads (`loadProject`, `Project`, `LockFile`; src/project) is exported here too: it has
 * no use apart from building, so it is not a subpath of its own.
 */
export {
  type BuildEvent,
  type BuildOptions,
  type BuildResult,
  type BuiltImage,
  type BuiltSbom,
  build,
} from '../build/build.js';
export { type CompileEvent, type CompileOptions, type CompileResult, compile } from '../build/compile.js';
export {
  buildWorkspace,
  findProjects,
  type ProjectEvent,
  type ProjectResult,
  type WorkspaceOptions,
  type WorkspaceResult,
} from '../build/workspace.js';
export { LockFile } from '../project/lock.js';
export { type LoadedProject, loadProject, type Project } from '../project/project.js';
