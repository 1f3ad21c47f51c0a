/** `kiln-oci/sign`: keys, signing and attesting images (cosign's forms), verifying them; SLSA provenance. */
export {
  generateKeys,
  isEncrypted,
  type KeyPair,
  type KeySpec,
  keyHint,
  loadPrivateKey,
  loadPublicKey,
  parsePrivateKey,
  parsePublicKey,
  readKeyText,
} from '../sign/keys.js';
export {
  type Attestation,
  type AttestOptions,
  attestImage,
  type Check,
  type SignedManifest,
  type SignOptions,
  type SignResult,
  signatureTag,
  signImage,
  type VerifyOptions,
  type VerifyReport,
  verifyImage,
} from '../sign/sign.js';
export { type ProvenanceInput, provenancePredicate, SLSA_PROVENANCE_V1 } from '../sign/slsa.js';
