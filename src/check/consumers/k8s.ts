/**
 * Kubernetes: the kubelet asks containerd's CRI plugin to pull, and the CRI pulls for the node's own
 * platform (linux/amd64, linux/arm64), whatever RuntimeClass (a runwasi shim) the pod names.
 */
import type { Platform } from '../../oci/platform.js';
import {
  defineConsumer,
  type Hit,
  imageFor,
  listedPlatforms,
  matching,
  picked,
  type Rule,
} from '../consumer.js';
import { checkUnpack, unpackRules } from './containerd.js';

const RULES: readonly Rule[] = [
  {
    id: 'k8s.node-platform',
    severity: 'fail',
    says: 'the CRI pulls an index for the node platform only; an index listing only wasm platforms fails with "no match for platform in manifest" (a single manifest is not filtered)',
    source:
      'containerd/containerd pkg/cri/server/image_pull.go (platforms.Default), images/handlers.go (LimitManifests)',
  },
  ...unpackRules('k8s', 'the CRI unpacks what it pulls'),
];

/** The node platforms checked: the two Kubernetes nodes run on. */
const NODES: readonly Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' },
];

export const k8s = defineConsumer({
  name: 'k8s',
  title: 'Kubernetes nodes (containerd CRI, linux/amd64 and linux/arm64)',
  rules: RULES,
  replay(subject, f) {
    let first: Hit | undefined;
    const missing: string[] = [];
    for (const node of NODES) {
      const hit = imageFor(subject, matching(node));
      if (!hit) missing.push(`${node.os}/${node.architecture}`);
      else first ??= hit;
    }
    if (missing.length === NODES.length)
      f.add(
        'k8s.node-platform',
        `a node pulls the index for its own platform (${missing.join(', ')}) and it lists only ${listedPlatforms(subject)}: "no match for platform in manifest"`,
        `--node-alias ${missing.join(',')} lists the wasm image under the node platforms`,
      );
    if (!first) return undefined;
    checkUnpack(first.image, f, 'k8s');
    return picked(first.image, first.platform);
  },
});
